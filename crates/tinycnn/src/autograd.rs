//! The reverse-mode engine: a topological walk over recorded ops, calling each op's
//! backward rule (written beside its forward, in [`crate::ops`]) and accumulating into leaf
//! gradients. Gradients are tensors, on the device of the op that made them.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::cell::Cell;
use std::collections::HashMap;

/// An op's backward rule and what it keeps from the forward pass (its inputs, indices, ...).
pub(crate) trait Backward: Send + Sync {
    /// PyTorch's `grad_fn` name (`AddmmBackward0`, ...).
    fn name(&self) -> &'static str;
    /// The op's tensor inputs, in the order [`Backward::backward`] returns their gradients.
    fn inputs(&self) -> Vec<&Tensor>;
    /// Gradients of the inputs from `grad`, the gradient of the op's output `out`;
    /// `needs[i]` says whether input `i` wants one (`None` where it does not).
    fn backward(&self, out: &Tensor, grad: &Tensor, needs: &[bool]) -> Result<Vec<Option<Tensor>>>;
}

/// The op that made a tensor, with the storage versions of its inputs at that time.
pub(crate) struct Node {
    pub(crate) op: Box<dyn Backward>,
    versions: Vec<u64>,
}

impl Node {
    pub(crate) fn new(op: impl Backward + 'static) -> Node {
        let versions = op.inputs().iter().map(|t| t.storage().version()).collect();
        Node {
            op: Box::new(op),
            versions,
        }
    }
}

thread_local! {
    static GRAD_ENABLED: Cell<bool> = const { Cell::new(true) };
}

/// Whether ops record the graph on this thread.
pub fn grad_enabled() -> bool {
    GRAD_ENABLED.with(|g| g.get())
}

/// Restores the previous grad mode when dropped (see [`no_grad_guard`]).
pub struct NoGradGuard {
    previous: bool,
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        GRAD_ENABLED.with(|g| g.set(self.previous));
    }
}

/// Turns graph recording off on this thread until the guard is dropped
/// (`with torch.no_grad():`).
pub fn no_grad_guard() -> NoGradGuard {
    let previous = GRAD_ENABLED.with(|g| g.replace(false));
    NoGradGuard { previous }
}

/// Runs `f` without recording the graph (`with torch.no_grad():`).
///
/// ```
/// use tinycnn::{no_grad, Tensor};
/// let w = Tensor::ones(&[2]).requires_grad_(true).unwrap();
/// let y = no_grad(|| &w * 3.0);
/// assert!(!y.requires_grad());
/// ```
pub fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = no_grad_guard();
    f()
}

impl Tensor {
    /// Back-propagates from this scalar (`loss.backward()`): every leaf that requires grad
    /// and was used gets `d self / d leaf` added to its `.grad()`.
    pub fn backward(&self) -> Result<()> {
        if self.numel() != 1 {
            return Err(Error::Autograd(format!(
                "backward() needs a scalar (one element), got shape {:?}; use backward_with(grad)",
                self.shape()
            )));
        }
        self.backward_with(&Tensor::ones(self.shape()).to(&self.device())?)
    }

    /// Back-propagates with an explicit output gradient of this tensor's shape.
    pub fn backward_with(&self, grad: &Tensor) -> Result<()> {
        if grad.shape() != self.shape() {
            return Err(Error::mismatch("backward_with", self.shape(), grad.shape()));
        }
        if !self.requires_grad() {
            return Err(Error::Autograd(
                "backward(): the tensor does not require grad and has no grad_fn".into(),
            ));
        }
        let order = topo_order(self);
        let mut grads: HashMap<usize, Tensor> = HashMap::new();
        grads.insert(self.id(), grad.detach());
        // No graph is recorded while gradients are computed.
        let _guard = no_grad_guard();
        for t in order.iter().rev() {
            let Some(g) = grads.remove(&t.id()) else {
                continue;
            };
            let Some(node) = t.node() else {
                if t.requires_grad() {
                    t.accumulate_grad(&g)?;
                }
                continue;
            };
            let inputs = node.op.inputs();
            for (i, (inp, &v)) in inputs.iter().zip(&node.versions).enumerate() {
                if inp.storage().version() != v {
                    return Err(Error::Autograd(format!(
                        "input {i} of {} was modified in place after it was used; \
                         gradients would be wrong",
                        node.op.name()
                    )));
                }
            }
            let needs: Vec<bool> = inputs.iter().map(|x| x.requires_grad()).collect();
            let input_grads = node.op.backward(t, &g, &needs)?;
            for ((inp, need), ig) in inputs.iter().zip(needs).zip(input_grads) {
                if !need {
                    continue;
                }
                let Some(ig) = ig else { continue };
                debug_assert_eq!(ig.shape(), inp.shape(), "{}", node.op.name());
                let sum = match grads.remove(&inp.id()) {
                    Some(acc) => acc.add(&ig)?,
                    None => ig,
                };
                grads.insert(inp.id(), sum);
            }
        }
        Ok(())
    }
}

/// Tensors reachable from `root` that require grad, inputs before the ops that use them
/// (iterative DFS, so deep graphs do not overflow the stack).
fn topo_order(root: &Tensor) -> Vec<Tensor> {
    let mut order = Vec::new();
    let mut visited = std::collections::HashSet::new();
    let mut stack: Vec<(Tensor, bool)> = vec![(root.clone(), false)];
    while let Some((t, expanded)) = stack.pop() {
        if expanded {
            order.push(t);
            continue;
        }
        if !visited.insert(t.id()) {
            continue;
        }
        stack.push((t.clone(), true));
        if let Some(node) = t.node() {
            for inp in node.op.inputs() {
                if inp.requires_grad() && !visited.contains(&inp.id()) {
                    stack.push((inp.clone(), false));
                }
            }
        }
    }
    order
}
