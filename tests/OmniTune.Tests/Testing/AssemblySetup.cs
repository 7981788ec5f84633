// TorchSharp's RNG, thread count and dispose-scope statistics are process-wide; tests run one at a time.
[assembly: CollectionBehavior(DisableTestParallelization = true)]
