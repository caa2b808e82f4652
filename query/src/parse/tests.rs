use super::*;

fn err(q: &str) -> String {
    parse(q).expect_err(q).to_string()
}

#[test]
fn keywords_are_case_insensitive_and_whitespace_free() {
    for q in [
        "select * from t where a = 1 and b = 2",
        "SELECT *\n  FROM t\n WHERE a = 1 AND b = 2;",
    ] {
        let s = parse(q).expect(q);
        assert!(matches!(s.from, From::Table(ref t) if t.table.name == "t"));
        assert!(
            matches!(s.filter, Some(Expr::And(ref v)) if v.len() == 2),
            "{q}"
        );
    }
}

#[test]
fn and_binds_tighter_than_or_and_chains_flatten() {
    let s = parse("SELECT * FROM t WHERE a = 1 OR b = 2 AND c = 3 OR d = 4").expect("parse");
    let Some(Expr::Or(parts)) = s.filter else {
        panic!("OR at the top")
    };
    assert_eq!(parts.len(), 3);
    assert!(matches!(&parts[1], Expr::And(v) if v.len() == 2));
    let s = parse("SELECT * FROM t WHERE (a = 1 AND b = 2) AND (c = 3 AND d = 4)").expect("parse");
    assert!(matches!(s.filter, Some(Expr::And(v)) if v.len() == 4));
}

#[test]
fn joins_aliases_and_table_star() {
    let s = parse("SELECT f.* FROM footprint AS f JOIN location l ON f.entity_id = l.entity_id WHERE l.chunk_index = 5")
        .expect("parse");
    assert!(matches!(&s.projection, Projection::TableStar(i) if i.name == "f"));
    let From::Join { left, right, .. } = &s.from else {
        panic!("join")
    };
    assert_eq!(left.visible_name().name, "f");
    assert_eq!(right.visible_name().name, "l");
}

#[test]
fn rejected_constructs_are_named_with_positions() {
    let cases = [
        (
            "SELECT * FROM t ORDER BY a",
            "ORDER BY is not supported in subscription queries (line 1, column 17)",
        ),
        (
            "SELECT * FROM t LIMIT 5",
            "LIMIT is not supported in subscription queries (line 1, column 17)",
        ),
        (
            "SELECT a, b FROM t",
            "a column projection (select `*` or `table.*`) is not supported in subscription queries (line 1, column 8)",
        ),
        (
            "SELECT COUNT(*) FROM t",
            "an aggregate function is not supported in subscription queries (line 1, column 8)",
        ),
        (
            "SELECT DISTINCT * FROM t",
            "DISTINCT is not supported in subscription queries (line 1, column 8)",
        ),
        (
            "DELETE FROM t",
            "data modification (INSERT, UPDATE, DELETE) and DDL is not supported in subscription queries (line 1, column 1)",
        ),
        (
            "SELECT * FROM t LEFT JOIN u ON t.a = u.b",
            "LEFT JOIN is not supported in subscription queries (line 1, column 17)",
        ),
        (
            "SELECT * FROM t WHERE NOT a = 1",
            "NOT is not supported in subscription queries (line 1, column 23)",
        ),
        (
            "SELECT * FROM t WHERE a IN (1, 2)",
            "IN is not supported in subscription queries (line 1, column 25)",
        ),
        (
            "SELECT * FROM t WHERE a = (SELECT 1)",
            "a subquery is not supported in subscription queries (line 1, column 27)",
        ),
        (
            "SELECT * FROM t GROUP BY a",
            "GROUP BY is not supported in subscription queries (line 1, column 17)",
        ),
        (
            "SELECT * FROM t\nWHERE a = 1 +",
            "unexpected character `+` (line 2, column 13)",
        ),
    ];
    for (q, want) in cases {
        let got = parse(q).map(|_| ()).expect_err(q).to_string();
        assert!(
            got.starts_with(want) || got == want,
            "{q}\n got: {got}\nwant: {want}"
        );
    }
}

#[test]
fn lexical_errors_say_what_and_where() {
    assert_eq!(
        err("SELECT * FROM t WHERE a = 'x"),
        "string literal is not terminated (line 1, column 27)"
    );
    assert_eq!(
        err("SELECT * FROM t WHERE a = X'abc'"),
        "malformed hex literal: it needs an even number of hex digits (line 1, column 27)"
    );
    assert_eq!(
        err("SELECT * FROM t WHERE a = 1)"),
        "`)` without a matching `(` (line 1, column 28)"
    );
    assert_eq!(
        err("SELECT * FROM t WHERE (a = 1"),
        "unclosed `(` (line 1, column 23)"
    );
    assert_eq!(
        err("SELECT * FROM t\n  WHERE a # 1"),
        "unexpected character `#` (line 2, column 11)"
    );
}

#[test]
fn length_limit_is_enforced_and_adjustable() {
    let q = format!(
        "SELECT * FROM t WHERE {}",
        vec!["a = 1"; 10_000].join(" OR ")
    );
    assert!(q.len() > QUERY_BYTES_MAX);
    assert!(matches!(
        parse(&q),
        Err(ParseError {
            kind: ParseErrorKind::TooLong { .. },
            ..
        })
    ));
    parse_with_limit(&q, q.len()).expect("raised limit");
}

/// Runs `f` on a thread with a 256 KiB stack, as the guard-rail tests require.
fn small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(f)
        .expect("spawn")
        .join()
        .expect("no stack overflow")
}

#[test]
fn seven_thousand_ors_parse_on_a_small_stack() {
    let n = small_stack(|| {
        let q = format!("SELECT * FROM t WHERE {}", vec!["a=1"; 7_000].join(" OR "));
        assert!(q.len() <= QUERY_BYTES_MAX);
        match parse(&q).expect("7,000 ORs").filter {
            Some(Expr::Or(v)) => v.len(),
            _ => 0,
        }
    });
    assert_eq!(n, 7_000);
}

#[test]
fn five_thousand_nested_parentheses_are_rejected_cleanly() {
    let got = small_stack(|| {
        let q = format!(
            "SELECT * FROM t WHERE {}a = 1{}",
            "(".repeat(5_000),
            ")".repeat(5_000)
        );
        parse(&q).map(|_| ()).expect_err("too deep").kind
    });
    assert_eq!(
        got,
        ParseErrorKind::TooDeep {
            max: PAREN_DEPTH_MAX
        }
    );
}

#[test]
fn literals_and_parameters() {
    let s = parse("SELECT * FROM t WHERE a = -5 AND b = 1.5e3 AND c = 'it''s' AND d = 0xBEEF AND e = :sender AND f = TRUE")
        .expect("parse");
    let Some(Expr::And(v)) = s.filter else {
        panic!("and")
    };
    let rhs: Vec<&Operand> = v
        .iter()
        .map(|e| match e {
            Expr::Cmp { rhs, .. } => rhs,
            _ => panic!("cmp"),
        })
        .collect();
    assert!(matches!(rhs[0], Operand::Literal(Literal::Int(s), _) if s == "-5"));
    assert!(matches!(rhs[1], Operand::Literal(Literal::Float(s), _) if s == "1.5e3"));
    assert!(matches!(rhs[2], Operand::Literal(Literal::Str(s), _) if s == "it's"));
    assert!(matches!(rhs[3], Operand::Literal(Literal::Hex(b), _) if b == &[0xbe, 0xef]));
    assert!(matches!(rhs[4], Operand::Param(i) if i.name == "sender"));
    assert!(matches!(rhs[5], Operand::Literal(Literal::Bool(true), _)));
}
