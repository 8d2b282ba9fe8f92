import fire


def train(epochs: int = 10, seed: int = 0, out_dir: str = "out"):
    print(epochs, seed, out_dir)


if __name__ == "__main__":
    fire.Fire(train)
