#[multiproc::main]
async fn main() {}
