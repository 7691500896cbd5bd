fn main() {
    std::process::exit(jumpstarter_cli::main_from_args());
}
