use tidings_macros::SqlEnum;

#[derive(SqlEnum, Clone, Copy)]
enum Shape {
    Point,
    Circle(u32),
}

fn main() {}
