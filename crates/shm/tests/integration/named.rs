//! Named segments, the resource tracker and ShareableList across processes.
