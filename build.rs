//! Build script: tells the tests what this machine can run, so tests that need what is missing show
//! as `ignored` (with the command that runs them) instead of passing without testing: a PostgreSQL
//! server (`TWIML_FAILOVER_TEST_POSTGRES`), and root (the restart test's socket filter path).
//! Reads one environment variable and this process's owner; writes nothing but cargo instructions.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rustc-check-cfg=cfg(root_tests)");
    println!("cargo::rerun-if-env-changed=TWIML_FAILOVER_TEST_POSTGRES");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TWIML_FAILOVER_TEST_POSTGRES").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
    if running_as_root() {
        println!("cargo::rustc-cfg=root_tests");
    }
}

#[cfg(unix)]
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the user the process runs as.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

#[cfg(not(unix))]
fn running_as_root() -> bool {
    false
}
