//! Text output: the confusion matrix and the probability table, with the data set's class
//! names (Fashion-MNIST's as d2l's `get_fashion_mnist_labels` names them, or MNIST's digits;
//! the runtime's lists, so the loader and the reports cannot disagree).

/// Counts of (true class, predicted class) pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// `counts[truth][predicted]`.
    pub counts: [[u64; 10]; 10],
}

impl Default for ConfusionMatrix {
    fn default() -> Self {
        Self::new()
    }
}

impl ConfusionMatrix {
    /// An all-zero matrix.
    pub fn new() -> Self {
        Self {
            counts: [[0; 10]; 10],
        }
    }

    /// Records one example. Labels outside 0..10 are the caller's bug, checked on load.
    pub fn add(&mut self, truth: usize, predicted: usize) {
        self.counts[truth][predicted] += 1;
    }

    /// Number of examples recorded.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Number of correct predictions (the diagonal).
    pub fn correct(&self) -> u64 {
        (0..10).map(|i| self.counts[i][i]).sum()
    }

    /// Fraction of correct predictions; 0 for an empty matrix.
    pub fn accuracy(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            0.0
        } else {
            self.correct() as f64 / t as f64
        }
    }

    /// Rows are the true class, columns the predicted class (abbreviated to fit), and the
    /// last column is the recall of each true class.
    pub fn render(&self, classes: &[&str; 10]) -> String {
        // Column heads fit in 8 characters.
        let short = classes.map(|c| if c == "ankle boot" { "boot" } else { c });
        let mut out = String::new();
        out.push_str(&format!("{:>12} | predicted\n", "true"));
        out.push_str(&format!("{:>12} |", ""));
        for s in short {
            out.push_str(&format!(" {s:>8}"));
        }
        out.push_str(" |   recall\n");
        out.push_str(&format!("{}\n", "-".repeat(12 + 2 + 9 * 10 + 11)));
        for (t, name) in classes.iter().enumerate() {
            out.push_str(&format!("{name:>12} |"));
            for p in 0..10 {
                out.push_str(&format!(" {:>8}", self.counts[t][p]));
            }
            let row: u64 = self.counts[t].iter().sum();
            let recall = if row == 0 {
                0.0
            } else {
                self.counts[t][t] as f64 / row as f64
            };
            out.push_str(&format!(" | {recall:>8.3}\n"));
        }
        out
    }
}

/// Index of the largest value (first one on ties, as `torch.argmax` does on CPU).
pub fn argmax(v: &[f32]) -> usize {
    // The kernel's rule, as `torch.argmax`: first of ties, and NaN counts as the maximum.
    let mut idx = [0u32];
    match tinycnn_kernels::argmax_rows(1, v.len(), v, &mut idx) {
        Ok(()) => idx[0] as usize,
        Err(_) => 0, // an empty row: there is no class to name, 0 as before
    }
}

/// Softmax of one row of logits (the kernel crate's `softmax_forward`, shifted by the
/// maximum for stability).
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    if logits.is_empty() {
        return Vec::new();
    }
    let mut p = vec![0.0; logits.len()];
    // One non-empty row whose length matches both buffers: the kernel's checks all pass.
    tinycnn_kernels::softmax_forward(1, logits.len(), logits, &mut p)
        .expect("one row of matching length");
    p
}

/// The predicted class followed by all ten probabilities, most likely first marked with `*`.
pub fn render_prediction(probs: &[f32], classes: &[&str; 10]) -> String {
    let best = argmax(probs);
    let mut out = format!("{} ({:.3})\n", classes[best], probs[best]);
    for (i, p) in probs.iter().enumerate() {
        let mark = if i == best { "*" } else { " " };
        out.push_str(&format!("{mark} {i} {:<10} {p:.4}\n", classes[i]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_and_accuracy() {
        let mut m = ConfusionMatrix::new();
        m.add(0, 0);
        m.add(0, 6);
        m.add(9, 9);
        m.add(3, 3);
        assert_eq!(m.total(), 4);
        assert_eq!(m.correct(), 3);
        assert_eq!(m.accuracy(), 0.75);
        let text = m.render(&tinycnn::data::FASHION_MNIST_CLASSES);
        assert_eq!(text.lines().count(), 13);
        assert!(text.lines().nth(1).unwrap().ends_with("boot |   recall"));
        let digits = m.render(&tinycnn::data::MNIST_CLASSES);
        assert!(digits.lines().any(|l| l.trim_start().starts_with("9 |")));
        let tshirt = text
            .lines()
            .find(|l| l.trim_start().starts_with("t-shirt |"))
            .unwrap();
        let cells: Vec<&str> = tshirt.split_whitespace().collect();
        // name, '|', ten counts, '|', recall
        assert_eq!(cells[2], "1");
        assert_eq!(cells[8], "1");
        assert_eq!(cells[13], "0.500");
    }

    #[test]
    fn softmax_of_equal_logits_is_uniform() {
        let p = softmax(&[3.0; 10]);
        for x in p {
            assert!((x - 0.1).abs() < 1e-7);
        }
        let p = softmax(&[0.0, 2f32.ln()]);
        assert!((p[0] - 1.0 / 3.0).abs() < 1e-6 && (p[1] - 2.0 / 3.0).abs() < 1e-6);
        assert!(softmax(&[]).is_empty());
    }

    #[test]
    fn argmax_takes_first_of_ties() {
        assert_eq!(argmax(&[1.0, 3.0, 3.0, 0.0]), 1);
    }

    #[test]
    fn argmax_counts_nan_as_the_maximum_like_pytorch() {
        assert_eq!(argmax(&[1.0, f32::NAN, 3.0, f32::NAN]), 1);
    }
}
