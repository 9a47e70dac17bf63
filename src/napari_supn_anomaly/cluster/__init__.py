"""Running detection over many fields and whole-slide images, in this process or on a Dask cluster.

The science is in ``pipeline`` (``pipeline.blocks.detect_block`` for one block of a big plane,
``pipeline.stacks.iter_detect`` for a field); this layer names the work by files (inputs, the
model, the output folder) so that it pickles and runs in any process, reads only the pixels a
task needs, writes results, and keeps one view of a run: progress, failures, cancel, resume.
"""
