//! The function binary is linked position-dependent (`-no-pie`): it needs no dynamic relocation
//! table (about 0.9 MB less to store and to load at a cold start). Only this binary's link gets
//! the flag; the dependencies compile as usual, so a dependency that also builds a shared
//! library (the AWS SDK's CRC crate does) still links.
fn main() {
    println!("cargo::rustc-link-arg-bin=bootstrap=-no-pie");
}
