//! Operator overloads. Tensor-with-tensor operators broadcast and return `Result<Tensor>`
//! (shapes can mismatch); tensor-with-scalar operators cannot fail and return `Tensor`.
//!
//! ```
//! use tinycnn::Tensor;
//! let x = Tensor::new([1.0, 2.0]);
//! let y = (&x * &x).unwrap() - 1.0; // [0, 3]
//! let z = (2.0 / &x) + 1.0; // [3, 2]
//! assert_eq!((&y + &z).unwrap().to_vec(), [3.0, 5.0]);
//! ```

use crate::error::Result;
use crate::tensor::Tensor;
use std::ops::{Add, Div, Mul, Neg, Sub};

macro_rules! tensor_tensor {
    ($tr:ident, $method:ident) => {
        impl $tr<&Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(self, rhs)
            }
        }
        impl $tr<Tensor> for &Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(self, &rhs)
            }
        }
        impl $tr<&Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: &Tensor) -> Result<Tensor> {
                Tensor::$method(&self, rhs)
            }
        }
        impl $tr<Tensor> for Tensor {
            type Output = Result<Tensor>;
            fn $method(self, rhs: Tensor) -> Result<Tensor> {
                Tensor::$method(&self, &rhs)
            }
        }
    };
}
tensor_tensor!(Add, add);
tensor_tensor!(Sub, sub);
tensor_tensor!(Mul, mul);
tensor_tensor!(Div, div);

macro_rules! tensor_scalar {
    ($tr:ident, $method:ident, $f:expr) => {
        impl $tr<f32> for &Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                $f(self, rhs)
            }
        }
        impl $tr<f32> for Tensor {
            type Output = Tensor;
            fn $method(self, rhs: f32) -> Tensor {
                $f(&self, rhs)
            }
        }
    };
}
tensor_scalar!(Add, add, |t: &Tensor, s| t.add_scalar(s));
tensor_scalar!(Sub, sub, |t: &Tensor, s: f32| t.add_scalar(-s));
tensor_scalar!(Mul, mul, |t: &Tensor, s| t.mul_scalar(s));
tensor_scalar!(Div, div, |t: &Tensor, s| t.div_scalar(s));

macro_rules! scalar_tensor {
    ($tr:ident, $method:ident, $f:expr) => {
        impl $tr<&Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, rhs: &Tensor) -> Tensor {
                $f(self, rhs)
            }
        }
        impl $tr<Tensor> for f32 {
            type Output = Tensor;
            fn $method(self, rhs: Tensor) -> Tensor {
                $f(self, &rhs)
            }
        }
    };
}
scalar_tensor!(Add, add, |s, t: &Tensor| t.add_scalar(s));
scalar_tensor!(Sub, sub, |s, t: &Tensor| t.neg().add_scalar(s));
scalar_tensor!(Mul, mul, |s, t: &Tensor| t.mul_scalar(s));
scalar_tensor!(Div, div, |s, t: &Tensor| t.pow(-1.0).mul_scalar(s));

impl Neg for &Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(self)
    }
}
impl Neg for Tensor {
    type Output = Tensor;
    fn neg(self) -> Tensor {
        Tensor::neg(&self)
    }
}
