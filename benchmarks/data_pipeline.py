"""Images per second of the batched augmentation against a per-image loop, in the same process.

    python benchmarks/data_pipeline.py                     # CIFAR-sized synthetic batches, crop + flip + cutout
    python benchmarks/data_pipeline.py --size 16 --cutout 0 --threads 2

Both paths produce identical tensors (tests/test_data.py checks it); this measures only the speed. The per-image
loop is ``reference_augment``: the same recipe one image at a time, as a torchvision-style Dataset would run it.
"""

from __future__ import annotations

import argparse
import time

import torch

from robustdarts.data import Augment, BatchStream, dataset_info, make_synthetic, reference_augment


def images_per_second(fn, batch: int, seconds: float) -> float:
    """Run ``fn`` once to warm up, then repeatedly for about ``seconds``; return images processed per second."""
    fn()
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds or done == 0:
        fn()
        done += batch
    return done / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--size", type=int, default=32, help="image height and width")
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--crop-padding", type=int, default=4)
    parser.add_argument("--cutout", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="time spent on each measurement")
    # One thread by default: the per-image loop's tiny ops cannot use more, and on a machine whose cores are shared
    # with other jobs, multi-threaded timings of millisecond ops swing by 10x or more.
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: leave torch's default)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    info = dataset_info("cifar10")
    mean, std = info.mean[:args.channels], info.std[:args.channels]
    data = make_synthetic(4 * args.batch_size, image_size=args.size, channels=args.channels)
    data.mean, data.std = mean, std
    images = data.images[:args.batch_size].to(args.device)
    augment = Augment(mean, std, crop_padding=args.crop_padding, cutout=args.cutout)
    generator = torch.Generator().manual_seed(0)
    kwargs = dict(crop_padding=args.crop_padding, cutout=args.cutout)

    def sync():  # CUDA work is asynchronous; wait for it so the clock measures the work
        if images.is_cuda:
            torch.cuda.synchronize()

    batched = images_per_second(lambda: (augment(images, generator), sync()), args.batch_size, args.seconds)
    per_image = images_per_second(lambda: (reference_augment(images, generator, mean, std, **kwargs), sync()),
                                  args.batch_size, args.seconds)
    stream = BatchStream(data, args.batch_size, augment, device=args.device)
    streamed = images_per_second(lambda: (next(stream), sync()), args.batch_size, args.seconds)

    print(f"device {args.device}, threads {torch.get_num_threads()}, batch {args.batch_size}, "
          f"{args.channels}x{args.size}x{args.size}, crop pad {args.crop_padding}, flip, cutout {args.cutout}")
    print(f"  per-image loop      {per_image:12,.0f} images/s")
    print(f"  batched augment     {batched:12,.0f} images/s")
    print(f"  BatchStream.next()  {streamed:12,.0f} images/s  (gather + augment)")
    print(f"  batched / per-image {batched / per_image:12.1f}x")


if __name__ == "__main__":
    main()
