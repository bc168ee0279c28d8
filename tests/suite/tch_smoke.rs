//! libtorch is linked and works: a tensor op and a backward pass on the CPU.

use tch::{Device, Kind, Tensor};

#[test]
fn tensor_op_and_backward_on_cpu() {
    let x = Tensor::from_slice(&[1.0f32, 2.0, 3.0])
        .to_device(Device::Cpu)
        .set_requires_grad(true);
    let y = (&x * &x).sum(Kind::Float);
    assert_eq!(y.double_value(&[]), 14.0);
    y.backward();
    let grad: Vec<f32> = Vec::try_from(x.grad()).unwrap();
    assert_eq!(grad, vec![2.0, 4.0, 6.0]);
}

#[test]
fn matmul_matches_hand_computation() {
    let a = Tensor::from_slice(&[1.0f64, 2.0, 3.0, 4.0]).view([2, 2]);
    let b = Tensor::from_slice(&[5.0f64, 6.0, 7.0, 8.0]).view([2, 2]);
    let c: Vec<f64> = Vec::try_from(a.matmul(&b).flatten(0, -1)).unwrap();
    assert_eq!(c, vec![19.0, 22.0, 43.0, 50.0]);
}
