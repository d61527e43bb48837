//! The backend matrix: the suite instantiated for every enabled backend and every pair.

#[allow(unused_imports)]
use ferry_tests::{backends, suite};

macro_rules! backend_suite {
    ($name:ident: $B:ty) => {
        mod $name {
            use super::*;

            #[test]
            fn to_host_layouts() {
                suite::report(
                    concat!(stringify!($name), " to_host layouts"),
                    suite::to_host_layouts::<$B>(),
                );
            }

            #[test]
            fn round_trips() {
                suite::report(
                    concat!(stringify!($name), " round trips"),
                    suite::round_trips::<$B>(),
                );
            }

            #[test]
            fn refusals() {
                suite::report(
                    concat!(stringify!($name), " refusals"),
                    suite::refusals::<$B>(),
                );
            }
        }
    };
}

macro_rules! pair_suite {
    ($name:ident: $A:ty => $B:ty) => {
        mod $name {
            use super::*;

            #[test]
            fn convert() {
                suite::report(
                    concat!(stringify!($name), " convert"),
                    suite::cross::<$A, $B>(),
                );
            }

            #[test]
            fn ops_agree() {
                suite::report(
                    concat!(stringify!($name), " ops agree"),
                    suite::ops_agree::<$A, $B>(),
                );
            }
        }
    };
}

#[cfg(feature = "candle")]
backend_suite!(candle: backends::Candle);
#[cfg(feature = "candle")]
pair_suite!(candle_to_candle: backends::Candle => backends::Candle);
