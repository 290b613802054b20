//! The mapping API written once for both pools: [`pool_api!`] takes each method as it is on
//! [`Pool`](crate::Pool) and defines it there, and under the same signature on
//! [`ThreadPool`](crate::ThreadPool), where it calls the pool inside.

/// Each method is written as on `Pool` (its attributes and docs, signature and body), after a
/// `#[thread_pool = "..."]` line, the docs of the `ThreadPool` method. Expands to an
/// `impl Pool` with the methods as written and an `impl ThreadPool` whose methods pass their
/// arguments to the pool's method of the same name (no `Deref`: a `ThreadPool` is not a
/// `Pool`, and methods that only make sense for processes, such as `pids`, are not offered).
macro_rules! pool_api {
    ($(
        #[thread_pool = $thread_doc:literal]
        $(#[$attr:meta])*
        pub fn $name:ident $(<$($gen:ident: $bound:path),+>)?
            (&$self:ident $(, $arg:ident: $ty:ty)* $(,)?) $(-> $ret:ty)? $body:block
    )+) => {
        impl $crate::Pool {
            $(
                $(#[$attr])*
                pub fn $name $(<$($gen: $bound),+>)? (&$self $(, $arg: $ty)*) $(-> $ret)? $body
            )+
        }

        impl $crate::ThreadPool {
            $(
                #[doc = $thread_doc]
                pub fn $name $(<$($gen: $bound),+>)? (&$self $(, $arg: $ty)*) $(-> $ret)? {
                    $self.0.$name($($arg),*)
                }
            )+
        }
    };
}

pub(crate) use pool_api;
