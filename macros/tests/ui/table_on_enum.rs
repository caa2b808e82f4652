use tidings_macros::table;

#[table(name = "color")]
enum Color {
    Red,
    Green,
}

fn main() {}
