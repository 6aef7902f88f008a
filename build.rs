//! Build script: tells the tests whether a PostgreSQL server is given, so the PostgreSQL journal
//! tests show as `ignored` (with the command that runs them) instead of passing without testing.
//! Pure: reads one environment variable, writes nothing but cargo instructions.

fn main() {
    println!("cargo::rustc-check-cfg=cfg(postgres_tests)");
    println!("cargo::rerun-if-env-changed=TWIML_FAILOVER_TEST_POSTGRES");
    println!("cargo::rerun-if-changed=build.rs");
    if std::env::var_os("TWIML_FAILOVER_TEST_POSTGRES").is_some_and(|v| !v.is_empty()) {
        println!("cargo::rustc-cfg=postgres_tests");
    }
}
