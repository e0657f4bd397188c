"""Toil style (the old sort example): an optparse parser given to addToilOptions."""
from optparse import OptionParser

from toil.job import Job


def sort_lines(job, lines):
    return sorted(lines)


def main():
    parser = OptionParser()
    Job.Runner.addToilOptions(parser)
    parser.add_option("--words", dest="words", default="b,a,c")
    options, args = parser.parse_args()
    if args:
        raise RuntimeError(f"Unrecognised input arguments: {args}")
    options.clean = "always"
    print(Job.Runner.startToil(Job.wrapJobFn(sort_lines, options.words.split(",")), options))


if __name__ == "__main__":
    main()
