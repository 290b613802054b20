#[multiproc::main]
fn main<T>() {}
