"""``kdnas best``, ``kdnas export``, ``kdnas predict`` and ``kdnas evaluate``: from a search's
store to a model folder, and using it."""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any

__all__ = ["add_keep_weights_argument", "keep_policy", "register"]


def keep_policy(text: str) -> Any:
    """An argparse type: ``all``, ``none`` or a count K (``kdnas.train.KeepPolicy``)."""
    from kdnas.train import KeepPolicy

    try:
        return KeepPolicy.parse(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def add_keep_weights_argument(parser: argparse.ArgumentParser) -> None:
    """--keep-weights: which full-data evaluations keep their trained weights."""
    from kdnas.train import DEFAULT_KEEP, KeepPolicy

    parser.add_argument(
        "--keep-weights",
        type=keep_policy,
        default=KeepPolicy(),
        metavar="all|none|K",
        help="keep the trained weights of full-data evaluations in <store>.weights: the best "
        f"K by validation accuracy (default {DEFAULT_KEEP}), all, or none",
    )


def register(subparsers: Any) -> None:
    best = subparsers.add_parser(
        "best",
        help="the best full-data evaluations of a search, and where their weights are",
        description="Print a run's full-data evaluations, best validation accuracy first: "
        "short architecture name, parameters, multiply-adds, accuracies, kept weights.",
    )
    best.add_argument("store", help="the search's SQLite store")
    best.add_argument("--run-id", default=None, help="the run (default: the only one, or search)")
    best.add_argument("--top", type=int, default=10, help="rows to show (10)")
    best.add_argument("--json", action="store_true", help="print JSON")
    best.set_defaults(func=run_best)

    export = subparsers.add_parser(
        "export",
        help="turn a stored evaluation into a model folder you can take away",
        description="Write a self-contained model folder (weights, architecture, class names, "
        "preprocessing, provenance; a torch.export program; ONNX optional) from a search's "
        "store (the run's best by default) or from weights kept by kdnas train.",
    )
    export.add_argument("source", help="a search's store, or a kept weights-*.pt/.json file")
    export.add_argument("--to", required=True, help="the model folder to write")
    export.add_argument(
        "--run-id", default=None, help="the run (default: the only one, or search)"
    )
    export.add_argument(
        "--arch", default=None, help="an architecture's key, JSON or short name (default: best)"
    )
    export.add_argument("--onnx", action="store_true", help="also write model.onnx (kdnas[onnx])")
    export.add_argument(
        "--no-program", action="store_true", help="skip the torch.export program (model.pt2)"
    )
    export.add_argument("--overwrite", action="store_true", help="replace an existing folder")
    export.set_defaults(func=run_export)

    predict = subparsers.add_parser(
        "predict",
        help="classify images with an exported model",
        description="Predict the class of an image or of every image under a folder, with the "
        "model's own preprocessing; writes file, class and probability as CSV or JSON.",
    )
    predict.add_argument("model", help="a model folder (kdnas export)")
    predict.add_argument("images", help="an image file or a folder of images")
    predict.add_argument("--format", choices=("csv", "json"), default="csv")
    predict.add_argument("--output", default=None, help="write here (default: standard output)")
    predict.set_defaults(func=run_predict)

    evaluate = subparsers.add_parser(
        "evaluate",
        help="accuracy of an exported model on a dataset",
        description="Score a model folder on a dataset's validation and test splits, the way "
        "the search scored it.",
    )
    evaluate.add_argument("model", help="a model folder (kdnas export)")
    evaluate.add_argument(
        "--dataset", required=True, help="'digits', a CIFAR folder/.tar.gz or an image folder"
    )
    evaluate.add_argument("--json", action="store_true", help="print JSON")
    evaluate.set_defaults(func=run_evaluate)


def run_best(args: argparse.Namespace) -> int:
    from kdnas.deploy import best_rows, format_best_table

    run_id, rows = best_rows(args.store, args.run_id, max(1, args.top))
    if args.json:
        print(json.dumps([row.__dict__ for row in rows], indent=2))
        return 0
    if not rows:
        print(f"run {run_id!r}: no finished full-data evaluation yet")
        return 0
    print(f"run {run_id!r} of {args.store}, best validation accuracy first:")
    print(format_best_table(rows))
    return 0


def run_export(args: argparse.Namespace) -> int:
    from kdnas.deploy import export_model, load_model

    folder = export_model(
        args.source,
        args.to,
        run_id=args.run_id,
        arch=args.arch,
        program=not args.no_program,
        onnx=args.onnx,
        overwrite=args.overwrite,
    )
    model = load_model(folder)
    provenance = model.description["provenance"]
    print(
        f"exported {model.description['arch_name']} to {folder} "
        f"({', '.join(sorted(model.description['files']))}): valid "
        f"{provenance['valid_acc']:.4f}, test {provenance['test_acc']:.4f}, "
        f"{len(model.classes)} classes"
    )
    return 0


def run_predict(args: argparse.Namespace) -> int:
    from kdnas.deploy import image_files, load_model, predict_files

    model = load_model(args.model)
    predictions = predict_files(model, image_files(args.images))
    rows = [
        {"file": p.file, "class": p.label, "probability": round(p.probability, 6)}
        for p in predictions
    ]
    if args.format == "json":
        text = json.dumps(rows, indent=2) + "\n"
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=["file", "class", "probability"])
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    if args.output:
        Path(args.output).write_text(text)
        print(f"{len(rows)} predictions written to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from kdnas.deploy import evaluate_model, load_model

    model = load_model(args.model)
    result = evaluate_model(model, args.dataset)
    provenance = model.description.get("provenance") or {}
    result["recorded_valid_acc"] = provenance.get("valid_acc")
    result["recorded_test_acc"] = provenance.get("test_acc")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(
        f"{args.model} on {args.dataset}: test {result['test_acc']:.4f} "
        f"({result['n_test']} images), valid {result['valid_acc']:.4f} "
        f"({result['n_valid']} images); recorded at training: test "
        f"{result['recorded_test_acc']}, valid {result['recorded_valid_acc']}"
    )
    return 0
