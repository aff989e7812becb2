//! `drivetag-server`: the command line lives in the library, so tests build the same program.

/// mimalloc: a full relabel allocates and frees tens of millions of small strings, and glibc's
/// allocator spent about a quarter of its CPU on that (`tools/bench/README.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    drivetag_server::cli::main()
}
