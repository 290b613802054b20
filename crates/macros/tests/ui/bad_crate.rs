#[multiproc::main(crate = "not a path")]
fn main() {}
