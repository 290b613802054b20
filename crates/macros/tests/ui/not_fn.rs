#[multiproc::main]
struct Main;

fn main() {}
