//! RawValue, RawArray, Value and Array across processes.
