# Sourced by bench/pipeline.sh and bench/tensor.sh: builds the CLI, writes the demo's tiny model and data into a temporary
# folder ($work, removed on exit) and defines $cli, $mpi, $iterations, $batch and mean_step.
iterations=${1:-20}
batch=${2:-8}
dotnet build src/OmniTune.Cli -c Release -v q -nologo >/dev/null
cli="dotnet src/OmniTune.Cli/bin/Release/net10.0/omnitune.dll"
mpi="mpirun --allow-run-as-root --oversubscribe"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
$cli demo --out "$work/demo" --steps 2 >/dev/null || true   # writes the tiny model and the data (2 steps: too few to learn, not needed)
mean_step() {   # mean "elapsed time per iteration" over the second half of the run (after warm-up)
  grep -o 'elapsed time per iteration (ms): [0-9.]*' | awk -v n="$iterations" '{ i++; if (i > n / 2) { s += $NF; c++ } } END { printf "%.1f", s / c }'
}
