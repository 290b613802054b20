#[multiproc::main(start_method = "fork")]
fn main() {}
