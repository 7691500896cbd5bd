fn main() {
    std::process::exit(jumpstarter_cli::j::main(
        std::env::args_os().skip(1).collect(),
    ));
}
