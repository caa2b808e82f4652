use tidings_macros::table;

#[table(name = "message", public, persistent)]
struct Message {
    #[primary_key]
    id: u64,
}

fn main() {}
