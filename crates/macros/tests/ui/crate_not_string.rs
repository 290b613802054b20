#[multiproc::main(crate = mp)]
fn main() {}
