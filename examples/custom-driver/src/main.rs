//! `lab-jmp`: the project's `jmp` (and, invoked as `j`, its `j`) with the lab's driver added.
//! `lab-jmp shell --exporter-config lab.yaml` / `lab-jmp run ...` serve configs that use
//! `type: example_thermometer.Thermometer` next to every built-in type.

fn main() {
    std::process::exit(jumpstarter_cli::main_with_drivers(
        example_thermometer::register,
    ));
}
