//! Guard rails: long OR chains compile on a 256 KiB stack, deep nesting is refused cleanly.

use tidings_engine::{AlgebraicType as T, Identity, Schema, TableSchema};
use tidings_query::parse::{PAREN_DEPTH_MAX, QUERY_BYTES_MAX};
use tidings_query::{Caller, CompileError, compile, compile_with_limit};

fn schema() -> Schema {
    Schema::new([TableSchema::builder("t")
        .column("a", T::U32)
        .column("b", T::String)
        .index(&["a"])
        .public()
        .build()
        .expect("t")])
    .expect("schema")
}

fn caller() -> Caller {
    Caller {
        identity: Identity::ZERO,
        is_owner: false,
    }
}

/// Runs `f` on a thread with a 256 KiB stack.
fn small_stack<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

fn ors(n: usize) -> String {
    let terms: Vec<String> = (0..n).map(|i| format!("a={}", i % 10)).collect();
    format!("SELECT * FROM t WHERE {}", terms.join(" OR "))
}

#[test]
fn seven_thousand_ors_compile() {
    let q = ors(7_000);
    assert!(q.len() <= QUERY_BYTES_MAX, "{} bytes", q.len());
    let plans = small_stack(move || compile(&q, &schema(), 1, caller()).map(|p| p.len()));
    assert_eq!(plans, Ok(1));
}

#[test]
fn ten_thousand_ors_compile_with_the_limit_raised() {
    let q = format!(
        "{} AND (b = 'x' OR a > 3)",
        ors(10_000).replace("a=", "a = ")
    );
    assert!(q.len() > QUERY_BYTES_MAX);
    let over = compile(&q, &schema(), 1, caller()).expect_err("over the default limit");
    assert!(
        over.to_string()
            .contains("more than the limit of 50000 bytes"),
        "{over}"
    );
    let n = q.len();
    let plans =
        small_stack(move || compile_with_limit(&q, &schema(), 1, caller(), n).map(|p| p.len()));
    assert_eq!(plans, Ok(1));
}

#[test]
fn five_thousand_nested_parentheses_are_rejected_cleanly() {
    let err = small_stack(|| {
        let q = format!(
            "SELECT * FROM t WHERE {}a = 1{}",
            "(".repeat(5_000),
            ")".repeat(5_000)
        );
        compile(&q, &schema(), 1, caller())
            .map(|_| ())
            .expect_err("too deep")
    });
    assert!(matches!(err, CompileError::Parse(_)));
    assert!(
        err.to_string()
            .contains(&format!("nest deeper than {PAREN_DEPTH_MAX} levels")),
        "{err}"
    );
}

#[test]
fn nesting_at_the_limit_compiles_on_a_small_stack() {
    let depth = PAREN_DEPTH_MAX;
    let plans = small_stack(move || {
        let mut q = String::from("a = 1");
        for i in 0..depth {
            let op = if i % 2 == 0 { "OR" } else { "AND" };
            q = format!("(b = 'v{i}' {op} {q})");
        }
        compile(
            &format!("SELECT * FROM t WHERE {q}"),
            &schema(),
            1,
            caller(),
        )
        .map(|p| p.len())
    });
    assert_eq!(plans, Ok(1));
}
