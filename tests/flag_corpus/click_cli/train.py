import click


@click.command()
@click.option("--epochs", default=10, type=int)
@click.option("--seed", default=0, type=int)
def main(epochs, seed):
    print(epochs, seed)


if __name__ == "__main__":
    main()
