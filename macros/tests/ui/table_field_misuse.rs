use tidings_macros::table;

#[table(name = "location", index(btree(columns = [x, y])))]
struct Location {
    #[primary_key]
    id: u64,
    #[primary_key]
    #[index(hash)]
    x: i32,
    #[unique(x)]
    z: i32,
}

fn main() {}
