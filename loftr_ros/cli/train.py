"""``loftr-train``: self-supervised training on planar and 3D-scene pairs of photos (optionally
distilled from a teacher).

Examples::

    loftr-train --data data/train --out runs/lite --epochs 4
    torchrun --nproc_per_node 2 -m loftr_ros.cli.train --data data/train --out runs/ddp
    loftr-train --data data/train --data ~/robot_images --init-weights loftr_ros/weights/lite.pt \\
        --out runs/finetune --epochs 1          # fine-tune the default model on your environment
    loftr-train --data data/train --scene-mix 0.7 --out runs/mix   # 70% 3D-scene pairs
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import List, Optional

from loftr_ros.cli import float_pair_argument


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="loftr-train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", action="append", required=True,
                        help="folder of images (recursive); repeat to add folders")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, log.jsonl)")
    parser.add_argument("--preset", default="lite")
    parser.add_argument("--layers", help="transformer schedule replacing the preset's, comma-"
                        "separated self/cross, e.g. self,cross,self,cross")
    parser.add_argument("--width", type=int, default=320, help="training crop width (pixels)")
    parser.add_argument("--height", type=int, default=240, help="training crop height (pixels)")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pairs-per-epoch", type=int, default=2000)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--warmup-steps", type=int, default=200)
    parser.add_argument("--coarse-negative-weight", type=float, default=1.0,
                        help="weight of the coarse focal loss's term on the non-matching cell "
                             "pairs (a mean over all of them: about 1.4M at 640x480)")
    parser.add_argument("--unseen-weight", type=float, default=0.0,
                        help="weight of the loss on the confidence that cells seen only in "
                             "their own image spend on matches (0: off)")
    parser.add_argument("--fine-weight", type=float, default=1.0)
    parser.add_argument("--fine-ce-weight", type=float, default=1.0,
                        help="weight of the fine window classification term (sharpens)")
    parser.add_argument("--fine-ce-target", choices=("nearest", "bilinear"), default="nearest",
                        help="fine cross-entropy target: the nearest window cell (default, as the "
                             "shipped model) or the bilinear soft target of the true position")
    parser.add_argument("--teacher", help="teacher checkpoint for distillation (any format)")
    parser.add_argument("--teacher-preset", help="preset of a teacher without embedded config")
    parser.add_argument("--distill-weight", type=float, default=0.5)
    parser.add_argument("--scene-mix", type=float, default=0.0,
                        help="share of 3D-scene pairs (rooms textured with the photos, "
                             "synthetic.scenes3d); the rest are planar homography pairs")
    parser.add_argument("--scene-baseline", type=float_pair_argument, metavar="LOW,HIGH",
                        help="camera translation of the 3D-scene pairs as a fraction of the depth "
                             "both cameras look at (default 0.05,0.6)")
    parser.add_argument("--scene-max-rotation", type=float, metavar="DEG",
                        help="largest relative rotation of the 3D-scene pairs' cameras (45)")
    parser.add_argument("--checkpoint-every", type=int, default=0, metavar="STEPS",
                        help="also write <out>/last.ckpt every STEPS steps (0: each epoch only)")
    parser.add_argument("--init-weights", help="start from these weights (fine-tuning)")
    parser.add_argument("--resume", action="store_true", help="continue from <out>/last.ckpt")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    parser.add_argument("--workers", type=int, default=0, help="data loader worker processes")
    parser.add_argument("--val-pairs", type=int, default=16)
    parser.add_argument("--weights-out", help="write final weights here (default <out>/model.pt)")
    parser.add_argument("--no-progress", action="store_true")
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    import torch

    from loftr_ros.training.trainer import TrainConfig, Trainer

    if args.threads:
        torch.set_num_threads(args.threads)
    config = TrainConfig(
        data_dirs=args.data, out_dir=args.out, preset=args.preset, width=args.width,
        height=args.height, batch_size=args.batch_size, epochs=args.epochs,
        pairs_per_epoch=args.pairs_per_epoch, lr=args.lr, warmup_steps=args.warmup_steps,
        coarse_negative_weight=args.coarse_negative_weight, unseen_weight=args.unseen_weight,
        fine_weight=args.fine_weight, fine_ce_weight=args.fine_ce_weight,
        fine_ce_target=args.fine_ce_target, teacher=args.teacher,
        teacher_preset=args.teacher_preset,
        distill_weight=args.distill_weight, seed=args.seed, device=args.device,
        workers=args.workers, val_pairs=args.val_pairs, init_weights=args.init_weights,
        scene_mix=args.scene_mix, checkpoint_every=args.checkpoint_every,
        scene_baseline=args.scene_baseline, scene_max_rotation_deg=args.scene_max_rotation,
        layers=[name.strip() for name in args.layers.split(",")] if args.layers else None)
    try:
        trainer = Trainer(config)
    except (ValueError, KeyError, OSError) as exc:
        print(f"loftr-train: {exc}", file=sys.stderr)
        return 2
    if trainer.is_main:
        print(f"loftr-train: {trainer.num_images} images, preset {config.preset}, "
              f"{config.width}x{config.height}, {trainer.steps_per_epoch} steps/epoch x "
              f"{config.epochs} epochs, device {trainer.device}, world size {trainer.world_size}",
              flush=True)
    if args.resume and os.path.exists(trainer.checkpoint_path()):
        trainer.resume(trainer.checkpoint_path())
        print(f"loftr-train: resumed at epoch {trainer.epoch}, step {trainer.step}", flush=True)
    try:
        trainer.run(progress=not args.no_progress)
    except KeyboardInterrupt:
        print("loftr-train: interrupted; state saved to " + trainer.checkpoint_path(),
              file=sys.stderr)
        return 130
    weights_path = args.weights_out or os.path.join(args.out, "model.pt")
    trainer.export_weights(weights_path)
    if trainer.is_main:
        print(f"loftr-train: wrote {weights_path}", flush=True)
    if trainer.world_size > 1:
        import torch.distributed as dist
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
