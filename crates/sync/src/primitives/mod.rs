//! Locks, semaphores, conditions, events and barriers.
