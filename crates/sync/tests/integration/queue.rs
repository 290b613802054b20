//! Queues between processes.
