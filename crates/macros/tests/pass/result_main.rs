// `main` may return a Result and carry inner attributes, which stay first in the body.
#[multiproc::main]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    #![allow(unused_variables)]
    let unused = 1;
    Ok(())
}
