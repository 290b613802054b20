#[multiproc::main]
fn main(args: Vec<String>) {}
