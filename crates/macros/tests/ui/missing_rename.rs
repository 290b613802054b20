// A `crate` path that names nothing is reported at the string the user wrote.
mod inner {
    #[multiproc::main(crate = "missing")]
    pub fn main() {}
}

fn main() {}
