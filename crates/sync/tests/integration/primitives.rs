//! Locks, semaphores, conditions, events and barriers across processes.
