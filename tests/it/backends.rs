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

            #[cfg(feature = "arrow")]
            #[test]
            fn arrow_columns() {
                suite::report(
                    concat!(stringify!($name), " arrow columns"),
                    suite::arrow_columns::<$B>(),
                );
            }
        }
    };
}

macro_rules! convert_suite {
    ($name:ident: $A:ty => $B:ty) => {
        #[test]
        fn $name() {
            suite::report(
                concat!("convert ", stringify!($name)),
                suite::cross::<$A, $B>(),
            );
        }
    };
}

// Pairs that can run the same ops: none when Burn is the only backend.
#[cfg_attr(
    not(any(feature = "candle", all(feature = "burn", feature = "tch"))),
    allow(unused_macros)
)]
macro_rules! ops_suite {
    ($name:ident: $A:ty, $B:ty) => {
        #[test]
        fn $name() {
            suite::report(
                concat!("ops agree ", stringify!($name)),
                suite::ops_agree::<$A, $B>(),
            );
        }
    };
}

#[cfg(feature = "candle")]
backend_suite!(candle: backends::Candle);
#[cfg(feature = "burn")]
backend_suite!(burn_float: backends::BurnFloat);
#[cfg(feature = "burn")]
backend_suite!(burn_int: backends::BurnInt);
#[cfg(feature = "burn")]
backend_suite!(burn_bool: backends::BurnBool);
#[cfg(feature = "tch")]
backend_suite!(tch: backends::Tch);

/// Every ordered (source, destination) pair that shares at least one dtype.
mod pairs {
    use super::*;

    #[cfg(feature = "candle")]
    convert_suite!(candle_to_candle: backends::Candle => backends::Candle);
    #[cfg(all(feature = "candle", feature = "burn"))]
    convert_suite!(candle_to_burn_float: backends::Candle => backends::BurnFloat);
    #[cfg(all(feature = "candle", feature = "burn"))]
    convert_suite!(candle_to_burn_int: backends::Candle => backends::BurnInt);
    #[cfg(all(feature = "candle", feature = "tch"))]
    convert_suite!(candle_to_tch: backends::Candle => backends::Tch);
    #[cfg(all(feature = "burn", feature = "candle"))]
    convert_suite!(burn_float_to_candle: backends::BurnFloat => backends::Candle);
    #[cfg(feature = "burn")]
    convert_suite!(burn_float_to_burn_float: backends::BurnFloat => backends::BurnFloat);
    #[cfg(all(feature = "burn", feature = "tch"))]
    convert_suite!(burn_float_to_tch: backends::BurnFloat => backends::Tch);
    #[cfg(all(feature = "burn", feature = "candle"))]
    convert_suite!(burn_int_to_candle: backends::BurnInt => backends::Candle);
    #[cfg(feature = "burn")]
    convert_suite!(burn_int_to_burn_int: backends::BurnInt => backends::BurnInt);
    #[cfg(all(feature = "burn", feature = "tch"))]
    convert_suite!(burn_int_to_tch: backends::BurnInt => backends::Tch);
    #[cfg(feature = "burn")]
    convert_suite!(burn_bool_to_burn_bool: backends::BurnBool => backends::BurnBool);
    #[cfg(all(feature = "burn", feature = "tch"))]
    convert_suite!(burn_bool_to_tch: backends::BurnBool => backends::Tch);
    #[cfg(all(feature = "tch", feature = "candle"))]
    convert_suite!(tch_to_candle: backends::Tch => backends::Candle);
    #[cfg(all(feature = "tch", feature = "burn"))]
    convert_suite!(tch_to_burn_float: backends::Tch => backends::BurnFloat);
    #[cfg(all(feature = "tch", feature = "burn"))]
    convert_suite!(tch_to_burn_int: backends::Tch => backends::BurnInt);
    #[cfg(all(feature = "tch", feature = "burn"))]
    convert_suite!(tch_to_burn_bool: backends::Tch => backends::BurnBool);
    #[cfg(feature = "tch")]
    convert_suite!(tch_to_tch: backends::Tch => backends::Tch);

    #[cfg(feature = "candle")]
    ops_suite!(candle_vs_candle: backends::Candle, backends::Candle);
    #[cfg(all(feature = "candle", feature = "burn"))]
    ops_suite!(candle_vs_burn: backends::Candle, backends::BurnFloat);
    #[cfg(all(feature = "candle", feature = "tch"))]
    ops_suite!(candle_vs_tch: backends::Candle, backends::Tch);
    #[cfg(all(feature = "burn", feature = "tch"))]
    ops_suite!(burn_vs_tch: backends::BurnFloat, backends::Tch);
}

/// A newcomer's generic function works unchanged on every framework's tensor.
#[cfg(all(feature = "candle", feature = "burn", feature = "tch"))]
#[test]
fn generic_summary_works_on_every_framework() {
    use ferry::ToHost;

    fn summary(t: &impl ToHost) -> ferry::Result<(usize, f64)> {
        let host = t.to_host()?.cast::<f64>()?;
        let view = host.view::<f64>()?;
        Ok((view.len(), view.sum()))
    }

    let candle =
        ::candle_core::Tensor::new(&[[1f32, 2.0], [3.0, 4.0]], &candle_core::Device::Cpu).unwrap();
    let burn = ::burn::tensor::Tensor::<2>::from_data(
        [[1f32, 2.0], [3.0, 4.0]],
        &::burn::tensor::Device::flex(),
    );
    let tch = ::tch::Tensor::from_slice(&[1f32, 2.0, 3.0, 4.0]).reshape([2, 2]);
    assert_eq!(summary(&candle).unwrap(), (4, 10.0));
    assert_eq!(summary(&burn).unwrap(), (4, 10.0));
    assert_eq!(summary(&tch).unwrap(), (4, 10.0));
}
