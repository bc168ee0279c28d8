//! Micro-batch planning: which sequences of an optimizer mini-batch go through one
//! forward/backward together.
//!
//! A micro-batch is a list of [`Unit`]s, each one prompt with responses to it that the
//! packed forward ([`crate::model::packed_response_logprobs`]) lays out in one row. With
//! prompt sharing a unit holds the responses of one group (its prompt is computed
//! once); without, every unit holds one response.
//!
//! Two rules form micro-batches ([`MicroBatching`]): a fixed number of rows in order
//! (`trainer.micro_batch_size`), or a token budget over prompt + response tokens
//! (`trainer.max_tokens_per_micro_batch`), filled first-fit decreasing. A unit larger
//! than the budget is split between its responses; a single sequence larger than the
//! budget gets a micro-batch of its own. Planning never changes the loss: normalisers
//! and the Clip-Cov / KL-Cov selection belong to the mini-batch.

/// One sequence of a mini-batch, as the planner sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqShape {
    /// Its GRPO group (sequences of one group share their prompt).
    pub group: usize,
    /// Prompt tokens.
    pub prompt_len: usize,
    /// Response tokens.
    pub response_len: usize,
}

/// How micro-batches are formed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MicroBatching {
    /// Consecutive runs of this many rows.
    Rows(usize),
    /// As few micro-batches as first-fit decreasing finds, each holding at most this
    /// many prompt + response tokens (a longer sequence alone).
    Tokens(usize),
}

/// Responses (row indices into the mini-batch, ascending) that share one prompt.
pub type Unit = Vec<usize>;

/// One micro-batch: its units, in ascending order of their first row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MicroBatch {
    /// The units of the packed row.
    pub units: Vec<Unit>,
}

impl MicroBatch {
    /// Its rows in the order the packed forward returns them.
    pub fn rows(&self) -> Vec<usize> {
        self.units.iter().flatten().copied().collect()
    }
}

/// Tokens the packed forward computes for `unit` (the prompt once when shared).
pub fn unit_tokens(seqs: &[SeqShape], unit: &[usize], share_prompt: bool) -> usize {
    let responses: usize = unit.iter().map(|&i| seqs[i].response_len).sum();
    let prompts = if share_prompt {
        unit.first().map_or(0, |&i| seqs[i].prompt_len)
    } else {
        unit.iter().map(|&i| seqs[i].prompt_len).sum()
    };
    prompts + responses
}

/// Plans the micro-batches of the mini-batch `seqs`; every row appears in exactly
/// one unit. Deterministic: ties keep row order.
pub fn plan_micro_batches(
    seqs: &[SeqShape],
    rule: MicroBatching,
    share_prompt: bool,
) -> Vec<MicroBatch> {
    match rule {
        MicroBatching::Rows(n) => {
            let rows: Vec<usize> = (0..seqs.len()).collect();
            rows.chunks(n.max(1))
                .map(|chunk| MicroBatch {
                    units: units_of(seqs, chunk, share_prompt),
                })
                .collect()
        }
        MicroBatching::Tokens(budget) => {
            let rows: Vec<usize> = (0..seqs.len()).collect();
            let mut units = Vec::new();
            for unit in units_of(seqs, &rows, share_prompt) {
                split_to_budget(seqs, unit, budget, share_prompt, &mut units);
            }
            first_fit_decreasing(seqs, units, budget, share_prompt)
        }
    }
}

/// Units of `rows`: runs of one group when sharing, else one row each.
fn units_of(seqs: &[SeqShape], rows: &[usize], share_prompt: bool) -> Vec<Unit> {
    let mut units: Vec<Unit> = Vec::new();
    for &row in rows {
        match units.last_mut() {
            Some(u) if share_prompt && seqs[u[0]].group == seqs[row].group => u.push(row),
            _ => units.push(vec![row]),
        }
    }
    units
}

/// Splits `unit` greedily, in row order, into pieces of at most `budget` tokens (a
/// response that alone exceeds it becomes a piece of its own).
fn split_to_budget(
    seqs: &[SeqShape],
    unit: Unit,
    budget: usize,
    share_prompt: bool,
    out: &mut Vec<Unit>,
) {
    if unit_tokens(seqs, &unit, share_prompt) <= budget {
        out.push(unit);
        return;
    }
    let mut piece: Unit = Vec::new();
    for row in unit {
        piece.push(row);
        if piece.len() > 1 && unit_tokens(seqs, &piece, share_prompt) > budget {
            piece.pop();
            out.push(std::mem::replace(&mut piece, vec![row]));
        }
    }
    out.push(piece);
}

/// Bins `units` by first-fit decreasing under `budget`; bins and their units come
/// back in row order.
fn first_fit_decreasing(
    seqs: &[SeqShape],
    units: Vec<Unit>,
    budget: usize,
    share_prompt: bool,
) -> Vec<MicroBatch> {
    let mut sized: Vec<(usize, Unit)> = units
        .into_iter()
        .map(|u| (unit_tokens(seqs, &u, share_prompt), u))
        .collect();
    sized.sort_by(|a, b| b.0.cmp(&a.0).then(a.1[0].cmp(&b.1[0])));
    let mut bins: Vec<(usize, Vec<Unit>)> = Vec::new();
    for (tokens, unit) in sized {
        match bins.iter_mut().find(|(used, _)| used + tokens <= budget) {
            Some((used, members)) => {
                *used += tokens;
                members.push(unit);
            }
            None => bins.push((tokens, vec![unit])),
        }
    }
    let mut out: Vec<MicroBatch> = bins
        .into_iter()
        .map(|(_, mut units)| {
            units.sort_by_key(|u| u[0]);
            MicroBatch { units }
        })
        .collect();
    out.sort_by_key(|m| m.units[0][0]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shapes(groups: &[usize], prompt: usize, responses: &[usize]) -> Vec<SeqShape> {
        groups
            .iter()
            .zip(responses)
            .map(|(&group, &response_len)| SeqShape {
                group,
                prompt_len: prompt,
                response_len,
            })
            .collect()
    }

    fn all_rows(plan: &[MicroBatch]) -> Vec<usize> {
        let mut rows: Vec<usize> = plan.iter().flat_map(MicroBatch::rows).collect();
        rows.sort_unstable();
        rows
    }

    #[test]
    fn rows_rule_keeps_order_and_groups_runs_when_sharing() {
        let s = shapes(&[0, 0, 0, 1, 1, 1], 4, &[1, 2, 3, 4, 5, 6]);
        let plan = plan_micro_batches(&s, MicroBatching::Rows(4), true);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].units, vec![vec![0, 1, 2], vec![3]]);
        assert_eq!(plan[1].units, vec![vec![4, 5]]);
        let plan = plan_micro_batches(&s, MicroBatching::Rows(4), false);
        assert_eq!(plan[0].units, vec![vec![0], vec![1], vec![2], vec![3]]);
    }

    #[test]
    fn token_budget_is_respected_and_bins_are_few() {
        // Sequences of 10 + r tokens; budget 40.
        let s = shapes(&[0, 1, 2, 3, 4, 5], 10, &[25, 5, 15, 20, 2, 30]);
        let plan = plan_micro_batches(&s, MicroBatching::Tokens(40), false);
        for mb in &plan {
            assert!(unit_tokens(&s, &mb.rows(), false) <= 40, "{mb:?}");
        }
        assert_eq!(all_rows(&plan), (0..6).collect::<Vec<_>>());
        // Sizes 35, 15, 25, 30, 12, 40: no two of 40, 35, 30, 25 fit together, so
        // they open four bins; 15 joins 25; 12 fits nowhere and opens the fifth.
        assert_eq!(plan.len(), 5);
    }

    #[test]
    fn a_sequence_longer_than_the_budget_gets_its_own_micro_batch() {
        let s = shapes(&[0, 1, 2], 8, &[100, 1, 3]);
        let plan = plan_micro_batches(&s, MicroBatching::Tokens(30), false);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].units, vec![vec![0]]);
        assert_eq!(plan[1].rows(), vec![1, 2]);
    }

    #[test]
    fn a_shared_group_over_the_budget_is_split_between_responses() {
        let s = shapes(&[0, 0, 0, 0], 10, &[10, 10, 10, 10]);
        // Whole group shared: 10 + 40 = 50 tokens; budget 35 → pieces of 2 responses.
        let plan = plan_micro_batches(&s, MicroBatching::Tokens(35), true);
        assert_eq!(plan.len(), 2);
        assert_eq!(plan[0].units, vec![vec![0, 1]]);
        assert_eq!(plan[1].units, vec![vec![2, 3]]);
        // Under a budget of 50 it is one unit, one micro-batch.
        let plan = plan_micro_batches(&s, MicroBatching::Tokens(50), true);
        assert_eq!(
            plan,
            vec![MicroBatch {
                units: vec![vec![0, 1, 2, 3]]
            }]
        );
    }

    #[test]
    fn sharing_counts_the_prompt_once() {
        let s = shapes(&[3, 3, 3], 48, &[5, 6, 7]);
        assert_eq!(unit_tokens(&s, &[0, 1, 2], true), 48 + 18);
        assert_eq!(unit_tokens(&s, &[0, 1, 2], false), 3 * 48 + 18);
    }
}
