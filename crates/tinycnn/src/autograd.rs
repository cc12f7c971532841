//! The reverse-mode engine: a topological walk over recorded ops, calling each op's
//! backward rule (all in [`crate::ops`]) and accumulating into leaf gradients.

use crate::error::{Error, Result};
use crate::ops::Op;
use crate::tensor::Tensor;
use std::cell::Cell;
use std::collections::HashMap;

/// The op that made a tensor, with the storage versions of its inputs at that time.
pub(crate) struct Node {
    pub(crate) op: Op,
    versions: Vec<u64>,
}

impl Node {
    pub(crate) fn new(op: Op) -> Node {
        let versions = op.inputs().iter().map(|t| t.storage().version()).collect();
        Node { op, versions }
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
        self.backward_with(&Tensor::ones(self.shape()))
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
        let mut grads: HashMap<usize, Vec<f32>> = HashMap::new();
        grads.insert(self.id(), grad.to_vec());
        // No graph is recorded while gradients are computed.
        let _guard = no_grad_guard();
        for t in order.iter().rev() {
            let Some(g) = grads.remove(&t.id()) else {
                continue;
            };
            let Some(node) = t.node() else {
                if t.requires_grad() {
                    t.accumulate_grad(g);
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
                debug_assert_eq!(ig.len(), inp.numel(), "{}", node.op.name());
                match grads.get_mut(&inp.id()) {
                    Some(acc) => acc.iter_mut().zip(&ig).for_each(|(a, b)| *a += b),
                    None => {
                        grads.insert(inp.id(), ig);
                    }
                }
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
