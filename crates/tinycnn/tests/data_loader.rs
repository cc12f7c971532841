//! DataLoader: batching, per-epoch shuffles, drop_last, prefetch independence.

use std::collections::HashSet;

use tinycnn::data::{Batch, DataError, DataLoader, LoaderConfig};

/// `n` samples of shape [1, 2, 2] whose four values are `i*10 + 0..4`, labelled `i % 10`.
fn loader(n: usize, config: LoaderConfig) -> DataLoader {
    let images: Vec<f32> = (0..n)
        .flat_map(|i| (0..4).map(move |k| (i * 10 + k) as f32))
        .collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    DataLoader::new(images, labels, [1, 2, 2], config).unwrap()
}

/// The sample index each batch row came from, read back from its first value.
fn sample_ids(batches: &[Batch]) -> Vec<usize> {
    batches
        .iter()
        .flat_map(|b| b.images.chunks(4).map(|c| c[0] as usize / 10))
        .collect()
}

fn config(batch_size: usize, shuffle: bool, drop_last: bool, prefetch: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size,
        shuffle,
        seed: 42,
        drop_last,
        prefetch,
    }
}

#[test]
fn sequential_batches_copy_the_right_samples() {
    let dl = loader(10, config(4, false, false, 2));
    assert_eq!(dl.len(), 3);
    assert_eq!(dl.num_samples(), 10);
    let batches: Vec<Batch> = dl.epoch(0).collect();
    assert_eq!(batches.len(), 3);
    assert_eq!(batches[0].shape, [4, 1, 2, 2]);
    assert_eq!(
        batches[0].images[..8],
        [0.0, 1.0, 2.0, 3.0, 10.0, 11.0, 12.0, 13.0]
    );
    assert_eq!(batches[0].labels, [0, 1, 2, 3]);
    assert_eq!(batches[2].len, 2);
    assert_eq!(batches[2].shape, [2, 1, 2, 2]);
    assert_eq!(
        batches[2].images,
        [80.0, 81.0, 82.0, 83.0, 90.0, 91.0, 92.0, 93.0]
    );
    assert_eq!(batches[2].labels, [8, 9]);
    assert_eq!(sample_ids(&batches), (0..10).collect::<Vec<_>>());
}

#[test]
fn drop_last_skips_the_short_batch() {
    let dl = loader(10, config(3, true, true, 2));
    assert_eq!(dl.len(), 3);
    let batches: Vec<Batch> = dl.epoch(5).collect();
    assert_eq!(batches.len(), 3);
    assert!(batches
        .iter()
        .all(|b| b.len == 3 && b.labels.len() == 3 && b.images.len() == 12));
    // The nine samples visited are the first nine of the epoch's order.
    assert_eq!(sample_ids(&batches), dl.order(5)[..9]);
    assert_eq!(loader(10, config(3, true, false, 2)).len(), 4);
    assert_eq!(loader(9, config(3, true, true, 2)).len(), 3);
    assert_eq!(loader(2, config(3, true, true, 2)).len(), 0);
}

#[test]
fn shuffle_is_a_permutation_fixed_by_seed_and_epoch() {
    let dl = loader(100, config(7, true, false, 2));
    let e0: Vec<Batch> = dl.epoch(0).collect();
    let ids0 = sample_ids(&e0);
    let mut sorted = ids0.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..100).collect::<Vec<_>>());
    assert_ne!(ids0, (0..100).collect::<Vec<_>>());
    // Labels travel with their images.
    for b in &e0 {
        for (row, label) in b.images.chunks(4).zip(&b.labels) {
            assert_eq!((row[0] as usize / 10) % 10, *label as usize);
        }
    }
    // Same seed and epoch: same order, with or without prefetching, from a fresh loader too.
    assert_eq!(
        sample_ids(
            &loader(100, config(7, true, false, 0))
                .epoch(0)
                .collect::<Vec<_>>()
        ),
        ids0
    );
    assert_eq!(sample_ids(&dl.epoch(0).collect::<Vec<_>>()), ids0);
    assert_eq!(dl.order(0), ids0);
    // Other epoch or other seed: another order.
    let ids1 = sample_ids(&dl.epoch(1).collect::<Vec<_>>());
    assert_ne!(ids1, ids0);
    let other_seed = LoaderConfig {
        seed: 43,
        ..config(7, true, false, 2)
    };
    assert_ne!(
        sample_ids(&loader(100, other_seed).epoch(0).collect::<Vec<_>>()),
        ids0
    );
    // Epochs of one seed are all distinct orders.
    let orders: HashSet<Vec<usize>> = (0..20).map(|e| dl.order(e)).collect();
    assert_eq!(orders.len(), 20);
}

#[test]
fn prefetch_depth_does_not_change_batches() {
    let reference: Vec<Batch> = loader(50, config(8, true, false, 0)).epoch(3).collect();
    for depth in [1, 2, 5] {
        let got: Vec<Batch> = loader(50, config(8, true, false, depth)).epoch(3).collect();
        assert_eq!(got, reference, "prefetch depth {depth}");
    }
}

#[test]
fn shuffle_positions_are_roughly_uniform() {
    // Over 2000 epochs of 4 samples, each sample lands first about 500 times.
    let dl = loader(4, config(4, true, false, 0));
    let mut first = [0u32; 4];
    for e in 0..2000 {
        first[dl.order(e)[0]] += 1;
    }
    assert!(first.iter().all(|&c| (400..600).contains(&c)), "{first:?}");
}

#[test]
fn dropping_an_epoch_early_stops_the_producer() {
    let dl = loader(1000, config(1, true, false, 1));
    for e in 0..20 {
        let mut it = dl.epoch(e);
        assert_eq!(it.len(), 1000);
        let first = it.next().unwrap();
        assert_eq!(first.len, 1);
        assert_eq!(it.len(), 999);
        drop(it); // must not hang with the producer blocked on a full channel
    }
}

#[test]
fn empty_and_invalid_inputs() {
    let empty = DataLoader::new(
        Vec::<f32>::new(),
        Vec::<u8>::new(),
        [1, 28, 28],
        LoaderConfig::default(),
    )
    .unwrap();
    assert!(empty.is_empty());
    assert_eq!(empty.epoch(0).count(), 0);

    let bad_batch = DataLoader::new(
        vec![0.0; 4],
        vec![0u8],
        [1, 2, 2],
        LoaderConfig {
            batch_size: 0,
            ..LoaderConfig::default()
        },
    );
    assert!(matches!(bad_batch, Err(DataError::InvalidArgument(_))));
    let bad_len = DataLoader::new(vec![0.0; 5], vec![0u8], [1, 2, 2], LoaderConfig::default());
    assert!(bad_len
        .unwrap_err()
        .to_string()
        .contains("5 image values do not make 1 samples"));
    let zero_dim = DataLoader::new(vec![0.0; 4], vec![0u8], [1, 0, 2], LoaderConfig::default());
    assert!(zero_dim.is_err());
}
