// `crate = "..."` takes any path to the facade: here the facade re-exported from a module.
mod facade {
    pub use multiproc::*;
}

#[multiproc::main(crate = "crate::facade")]
fn main() {}
