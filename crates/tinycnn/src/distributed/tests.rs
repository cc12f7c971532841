use super::*;

#[test]
fn shards_cover_the_batch_in_order() {
    for size in 1..5 {
        for len in 0..12 {
            let parts: Vec<_> = (0..size).map(|r| shard_of(len, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, len);
            for w in parts.windows(2) {
                assert_eq!(w[0].end, w[1].start);
                assert!(w[0].len() >= w[1].len() && w[0].len() - w[1].len() <= 1);
            }
        }
    }
    assert_eq!(shard_of(1, 1, 2), 1..1);
}

fn on_ranks<R: Send>(
    comms: Vec<LocalCommunicator>,
    f: impl Fn(LocalCommunicator) -> R + Sync,
) -> Vec<R> {
    std::thread::scope(|s| {
        let hs: Vec<_> = comms.into_iter().map(|c| s.spawn(|| f(c))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn local_group_sums_and_broadcasts() {
    let got = on_ranks(LocalGroup::new(3), |c| {
        let r = c.rank() as f32;
        let mut v = [r, 10.0 * r];
        c.all_reduce_sum_f32(&mut v).unwrap();
        let mut b = if c.rank() == 1 { vec![7, 8, 9] } else { vec![] };
        c.broadcast_bytes(&mut b, 1).unwrap();
        (v, b)
    });
    for (v, b) in got {
        assert_eq!(v, [3.0, 30.0]);
        assert_eq!(b, [7, 8, 9]);
    }
}

#[test]
fn a_missing_rank_times_out() {
    let mut comms = LocalGroup::with_timeout(2, Duration::from_millis(50));
    let _silent = comms.pop();
    let err = comms[0].all_reduce_sum_f64(&mut [1.0]).unwrap_err();
    assert!(err.to_string().contains("waited"), "{err}");
}

#[test]
fn abort_releases_the_others() {
    let got = on_ranks(LocalGroup::new(2), |c| {
        if c.rank() == 1 {
            c.abort(1);
            return None;
        }
        Some(c.all_reduce_sum_f64(&mut [1.0]).unwrap_err().to_string())
    });
    assert!(got[0].as_deref().unwrap().contains("rank 1 aborted"));
}

#[test]
fn gradients_are_weighted_by_shard_size() {
    // Global batch of 3: rank 0 has 2 examples with mean gradient [1, 2], rank 1 has one
    // with gradient [4, 8]; the global mean is (2*[1,2] + [4,8]) / 3 = [2, 4].
    let got = on_ranks(LocalGroup::new(2), |c| {
        let rank = c.rank();
        let mut dp = DataParallel::new(Box::new(c));
        let w = Tensor::zeros(&[2]).requires_grad_(true).unwrap();
        let unused = Tensor::zeros(&[1]).requires_grad_(true).unwrap();
        let (g, n, loss) = if rank == 0 {
            ([1.0, 2.0], 2, 0.5)
        } else {
            ([4.0, 8.0], 1, 3.0)
        };
        w.set_grad(Some(Tensor::new(g))).unwrap();
        let agreed = dp
            .all_reduce_gradients(&[w.clone(), unused.clone()], n, 3, Some(loss), rank == 1)
            .unwrap();
        (w.grad().unwrap().to_vec(), unused.grad().is_none(), agreed)
    });
    for (g, none, agreed) in got {
        assert_eq!(g, [2.0, 4.0]);
        assert!(none);
        assert_eq!(agreed.loss_sum, Some(3.5));
        assert!(agreed.stop);
    }
}

#[test]
fn check_same_names_the_difference() {
    let got = on_ranks(LocalGroup::new(2), |c| {
        let dp = DataParallel::new(Box::new(c));
        let v = format!("batch 256, epoch {}", dp.rank());
        dp.check_same("the epoch to resume after", v.as_bytes())
    });
    for r in got {
        assert!(r.unwrap_err().to_string().contains("epoch to resume after"));
    }
}
