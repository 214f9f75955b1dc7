"""Per-user values of RecBole's top-K metrics, for significance tests across models.

RecBole's evaluator returns each metric averaged over the test users. A per-user test
(Wilcoxon signed-rank over users, :mod:`recbole_gtc.study.stats`) needs the value of
every user, so :class:`PerUserRecorder` keeps the last evaluation's collected ranking
(RecBole's ``rec.topk`` struct) together with the users of each batch, and
:func:`per_user_metrics` evaluates the same metric classes RecBole used, user by user.
"""

import inspect

import numpy as np
import torch
from recbole.evaluator.base_metric import TopkMetric
from recbole.evaluator.register import metrics_dict


def per_user_metrics(config, struct):
    """Each test user's value of every configured top-K metric.

    Args:
        config (Config): the run's configuration (``metrics``, ``topk``).
        struct (DataStruct): RecBole's collected evaluation data (holds ``rec.topk``:
            ``[n_users, max(topk) + 1]``, hit flags of the top-K items then the user's
            number of positives).

    Returns:
        dict: ``"recall@20"``-style name -> float array ``[n_users]`` in the struct's user
        order; averaging one over users gives RecBole's value (before its rounding).
        Metrics that are not top-K metrics (AUC, MAE, ...) are left out.
    """
    values = {}
    for name in config["metrics"]:
        metric_class = metrics_dict.get(name.lower())
        if metric_class is None or not issubclass(metric_class, TopkMetric):
            continue
        metric = metric_class(config)
        pos_index, pos_len = metric.used_info(struct)
        # RecBole's top-K metrics take (pos_index) or (pos_index, pos_len).
        wants_len = len(inspect.signature(metric.metric_info).parameters) > 1
        table = metric.metric_info(pos_index, pos_len) if wants_len else metric.metric_info(pos_index)
        for k in config["topk"]:
            values[f"{name.lower()}@{k}"] = np.asarray(table[:, k - 1], dtype=np.float64)
    return values


class PerUserRecorder:
    """Mixed into the run trainers: remembers the users and the collected ranking of the
    last :meth:`evaluate` call (``last_eval_users``: internal user ids, ``[n_users]``;
    ``last_eval_struct``: RecBole's DataStruct), at no cost to RecBole's own evaluation."""

    last_eval_users = None
    last_eval_struct = None

    def _record_eval_users(self):
        collector, evaluator = self.eval_collector, self.evaluator
        if getattr(collector, "_per_user_wrapped", False):
            return
        uid_field = self.config["USER_ID_FIELD"]
        users = []
        collect = collector.eval_batch_collect
        evaluate = evaluator.evaluate

        def eval_batch_collect(scores_tensor, interaction, positive_u, positive_i):
            # Full-ranking batches hold one row per user, in the order of the scores' rows.
            users.append(interaction[uid_field].detach().cpu())
            return collect(scores_tensor, interaction, positive_u, positive_i)

        def evaluate_struct(struct):
            self.last_eval_users = torch.cat(users).numpy() if users else None
            self.last_eval_struct = struct
            users.clear()
            return evaluate(struct)

        collector.eval_batch_collect = eval_batch_collect
        evaluator.evaluate = evaluate_struct
        collector._per_user_wrapped = True

    def per_user_result(self, dataset):
        """The last evaluation, user by user.

        Args:
            dataset (Dataset): gives the users' external tokens.

        Returns:
            tuple or None: ``(users, values)``: ``users`` the external user tokens
            (list of str, ``[n_users]``), ``values`` as :func:`per_user_metrics`; ``None``
            when the last evaluation was not a full ranking (no per-user rows).
        """
        struct, uids = self.last_eval_struct, self.last_eval_users
        if struct is None or uids is None or "rec.topk" not in struct:
            return None
        values = per_user_metrics(self.config, struct)
        if any(len(v) != len(uids) for v in values.values()):
            return None  # not one row per user (e.g. a sampled evaluation)
        tokens = dataset.id2token(dataset.uid_field, uids)
        return [str(t) for t in tokens], values
