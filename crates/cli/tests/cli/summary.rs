//! `tinycnn summary`: the layer shapes of the zoo's models.

use super::*;

#[test]
fn summary_walks_lenet_shapes_like_d2l() {
    let o = run(&["summary"]);
    assert_ok(&o);
    let text = stdout(&o);
    let expected = [
        "Conv2d output shape: [1, 6, 28, 28]",
        "Sigmoid output shape: [1, 6, 28, 28]",
        "AvgPool2d output shape: [1, 6, 14, 14]",
        "Conv2d output shape: [1, 16, 10, 10]",
        "Sigmoid output shape: [1, 16, 10, 10]",
        "AvgPool2d output shape: [1, 16, 5, 5]",
        "Flatten output shape: [1, 400]",
        "Linear output shape: [1, 120]",
        "Sigmoid output shape: [1, 120]",
        "Linear output shape: [1, 84]",
        "Sigmoid output shape: [1, 84]",
        "Linear output shape: [1, 10]",
    ];
    let shape_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("output shape:"))
        .collect();
    assert_eq!(shape_lines.len(), expected.len(), "{text}");
    // Each line is the layer's name (its index in the Sequential), then d2l's line.
    for (i, (line, want)) in shape_lines.iter().zip(expected).enumerate() {
        let (name, rest) = line.split_once(' ').unwrap();
        assert_eq!(name, i.to_string(), "{line:?}");
        assert!(
            rest.trim_start().starts_with(want),
            "{line:?} should continue with {want:?}"
        );
    }
    // 6*1*25+6, 16*6*25+16, 400*120+120, 120*84+84, 84*10+10.
    for (layer, count) in [(0, 156), (3, 2416), (7, 48120), (9, 10164), (11, 850)] {
        assert!(
            shape_lines[layer]
                .trim_end()
                .ends_with(&format!("{count} params")),
            "{:?} should end with {count} params",
            shape_lines[layer]
        );
    }
    assert!(text.contains("total params: 61706"), "{text}");

    let o = run(&["summary", "--model", "lenet-relu"]);
    assert_ok(&o);
    let text = stdout(&o);
    assert!(text.contains("ReLU output shape: [1, 6, 28, 28]"), "{text}");
    assert!(
        text.contains("MaxPool2d output shape: [1, 16, 5, 5]"),
        "{text}"
    );
    assert!(text.contains("total params: 61706"), "{text}");
}

#[test]
fn summary_lists_the_leaves_of_nested_dscnn_with_dotted_paths() {
    let o = run(&["summary", "--model", "dscnn"]);
    assert_ok(&o);
    let text = stdout(&o);
    let shape_lines: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("output shape:"))
        .collect();
    // Stem (3 layers), four blocks of six, pooling, flatten, linear.
    assert_eq!(shape_lines.len(), 3 + 4 * 6 + 3, "{text}");
    let starts = |i: usize, want: &str| {
        let words: Vec<&str> = shape_lines[i].split_whitespace().collect();
        assert_eq!(words[..2].join(" "), want, "{}", shape_lines[i]);
    };
    starts(0, "0 Conv2d");
    starts(1, "1 BatchNorm2d");
    starts(3, "3.0 Conv2d");
    starts(26, "6.5 ReLU");
    starts(29, "9 Linear");
    assert!(
        shape_lines[3].contains("output shape: [1, 32, 14, 14]")
            && shape_lines[3].ends_with("288 params"),
        "{}",
        shape_lines[3]
    );
    assert!(shape_lines[27].contains("AdaptiveAvgPool2d output shape: [1, 128, 1, 1]"));
    assert!(text.contains("total params: 49418"), "{text}");
}
