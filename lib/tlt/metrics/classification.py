"""Classification metrics: accuracy, top-k, per-class precision/recall/F1, confusion matrix."""

from __future__ import annotations

import numpy as np

__all__ = ["classification_metrics", "format_metrics_table"]


def classification_metrics(labels, probabilities, class_names: list[str], top_k: int = 5) -> dict:
    """Compute the evaluation report of a classifier.

    Args:
        labels: true class indices, shape [N].
        probabilities: predicted class probabilities, shape [N, K].
        class_names: the K class names in index order.
        top_k: k of the top-k accuracy (clipped to K).

    Returns:
        A JSON-serialisable dict: ``num_images``, ``accuracy``, ``top_k``, ``top_k_accuracy``,
        ``per_class`` (name -> precision, recall, f1, support) and ``confusion_matrix`` (rows =
        true class, columns = predicted class), plus ``macro_f1``.
    """
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support, top_k_accuracy_score

    labels = np.asarray(labels, dtype=np.int64)
    probabilities = np.asarray(probabilities, dtype=np.float64)
    k = len(class_names)
    predicted = probabilities.argmax(axis=1)
    top_k = max(1, min(int(top_k), k))
    indices = list(range(k))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=indices, zero_division=0)
    accuracy = float((predicted == labels).mean()) if len(labels) else 0.0
    if top_k >= k:
        top_k_acc = 1.0 if len(labels) else 0.0
    elif top_k == 1:
        top_k_acc = accuracy
    else:
        top_k_acc = top_k_accuracy_score(labels, probabilities, k=top_k, labels=indices)
    return {
        "num_images": int(len(labels)),
        "accuracy": accuracy,
        "top_k": top_k,
        "top_k_accuracy": float(top_k_acc),
        "macro_f1": float(np.mean(f1)) if k else 0.0,
        "per_class": {
            name: {"precision": float(precision[i]), "recall": float(recall[i]),
                   "f1": float(f1[i]), "support": int(support[i])}
            for i, name in enumerate(class_names)
        },
        "class_names": list(class_names),
        "confusion_matrix": confusion_matrix(labels, predicted, labels=indices).tolist(),
    }


def format_metrics_table(metrics: dict) -> str:
    """Render the report as the text table tlt-evaluate prints."""
    names = metrics["class_names"]
    width = max([len("class")] + [len(n) for n in names])
    lines = [
        f"Accuracy: {metrics['accuracy']:.4f}   Top-{metrics['top_k']} accuracy: "
        f"{metrics['top_k_accuracy']:.4f}   Images: {metrics['num_images']}",
        "",
        f"{'class':<{width}}  precision  recall  f1-score  support",
    ]
    for name in names:
        row = metrics["per_class"][name]
        lines.append(f"{name:<{width}}  {row['precision']:9.4f}  {row['recall']:6.4f}  "
                     f"{row['f1']:8.4f}  {row['support']:7d}")
    lines += ["", "Confusion matrix (rows: true class, columns: predicted class):"]
    cell = max(5, max(len(str(v)) for row in metrics["confusion_matrix"] for v in row) + 1)
    header = " " * width + "  " + "".join(f"{i:>{cell}}" for i in range(len(names)))
    lines.append(header)
    for i, name in enumerate(names):
        counts = "".join(f"{v:>{cell}}" for v in metrics["confusion_matrix"][i])
        lines.append(f"{name:<{width}}  {counts}")
    return "\n".join(lines)
