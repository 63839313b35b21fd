"""A trained TIGER model that answers requests in the data set's own ids: `recommend(history, k)`.

    from serving import load_recommender
    rec = load_recommender("out/decoder_cpu/amazon-beauty")   # a decoder run folder, or an exported model folder
    for r in rec.recommend(["B004756YJA", "B004ZT0SSG"], k=5):  # a history, oldest first (Amazon ASINs)
        print(r.item_id, f"{r.score:.3f}", r.title)

The answer is evaluate.py's: the same trie-constrained beam search (modules/beam_search.py) over the same
semantic IDs, in the run's precision, with at least the run's validation beam width and its transition prior
(train.eval_transition_prior: the training split's counts of what followed the history's last item); for a
user of the data set asked with their id and their split history it is evaluate.py's list for that user (tested).

Two protocols, named as evaluation/report.py names them: "plain" ranks every catalogue item, the history's
included (the paper's); "history_skipped" never returns an item of the given history (a filter after the
softmax: the other items keep their scores). The default is the one the run chose best.pt on
(train.eval_exclude_history).

The user token: the model reads a hashed user id besides the history. Asked with `user=` (the data set's own
user id), that user's token is read, as in training and evaluation. A history asked about without a user
masks the token, so the model reads the history alone rather than the token of whichever ~11 users share
some hash bucket (a choice: not measured against a fixed bucket). A model trained with one user token for all
(train.n_user_buckets = 1, the laptop recipe) reads that token for every history, as it did in training.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from data.processed import SeqData, as_dataset, load_processed
from evaluation.protocols import PROTOCOLS, protocol_name
from evaluation.retrieval import transition_prior_table
from modules.beam_search import constrained_beam_search
from modules.model import EncoderDecoderRetrievalModel
from modules.tokenizer import SemanticIdTokenizer
from runtime import precision as precisions
from runtime.checkpointing import check_trained_with, load_checkpoint, recorded_bindings
from runtime.errors import CheckpointError, MissingFileError, RequestError
from runtime.run_folder import existing_tokenizer_path
from serving.model_folder import ModelFolder, is_model_folder, read_model_folder, write_model_folder

ItemId = str | int  # the data set's own id; an int is read as its decimal text (MovieLens' movie 1193 = "1193")
# The run's bindings a Recommender reads: where its data and tokenizer are, and how validation searched.
RUN_BINDINGS = ("dataset_folder", "dataset", "split", "cache_dir", "tokenizer_dir", "precision", "eval_beam_width",
                "eval_batch_size", "eval_exclude_history")
PRIOR_BINDING = "eval_transition_prior"  # the search's transition prior; runs from before it had none (0)
USER_SPLITS = ("all", "valid", "test")
SHOWN_UNKNOWN = 5  # unknown ids named in an error; the rest are counted


@dataclass(frozen=True)
class Recommendation:
    item_id: str  # the data set's own id: an ASIN, a MovieLens movie id, your catalogue's string
    title: str
    score: float  # log P(item | history) as the beam search scored it (with the run's transition prior, of the
                  # product with the counts): higher first; comparable within one answer


class Recommender:
    """A retrieval model with its semantic IDs, catalogue and user ids, ready to answer. Build one with
    `load_recommender` (or `from_run` / `from_folder`); `export` writes a self-contained model folder."""

    def __init__(self, model: EncoderDecoderRetrievalModel, tokenizer: SemanticIdTokenizer, item_ids: list[str],
                 titles: list[str], user_ids: list[str], *, config: dict[str, Any], source: dict[str, Any],
                 device: str | torch.device = "auto", successors: tuple[torch.Tensor, torch.Tensor] | None = None) -> None:
        """successors: the run's transition prior (evaluation/retrieval.transition_prior_table), needed when its
        config binds train.eval_transition_prior > 0."""
        if not len(item_ids) == len(titles) == tokenizer.n_items:
            raise CheckpointError(f"the catalogue has {len(item_ids):,} items but the semantic-ID table "
                                  f"{tokenizer.n_items:,}: the tokenizer belongs to another catalogue")
        if (tokenizer.n_codebooks + 1, tokenizer.codebook_size) != (model.n_levels, model.codebook_size):
            raise CheckpointError(f"the model reads {model.n_levels} tokens of {model.codebook_size} codes per item, the "
                                  f"tokenizer has {tokenizer.n_codebooks + 1} of {tokenizer.codebook_size}")
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if str(device) == "auto" else device)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.sem_ids = tokenizer.sem_ids.to(self.device)  # [n_items, T]
        self.trie = tokenizer.trie().to(self.device)
        self.item_ids, self.titles, self.user_ids = list(item_ids), list(titles), list(user_ids)
        self.item_index = {item: i for i, item in enumerate(self.item_ids)}  # own id -> the model's item number
        self.user_index = {user: u for u, user in enumerate(self.user_ids)}
        self.config, self.source = dict(config), dict(source)
        self.precision = config["precision"]
        self.protocol = protocol_name(config["eval_exclude_history"])  # the one best.pt was chosen on
        self.beam_width = config["eval_beam_width"]
        self.batch_size = config["eval_batch_size"]
        self.prior_weight = float(config.get(PRIOR_BINDING, 0.0))
        if self.prior_weight and (successors is None or len(successors[0]) != tokenizer.n_items):
            raise CheckpointError(f"the run searches with train.{PRIOR_BINDING} = {self.prior_weight} but its transition "
                                  "counts are missing or of another catalogue")
        self.successors = (tuple(t.to(self.device) for t in successors)
                           if self.prior_weight and successors is not None else None)
        self.max_seq_len = model.max_history  # the model reads the most recent max_seq_len items
        self.data: tuple[str, str, str, str] | None = None  # (dataset_folder, dataset, split, cache_dir) of a run

    # -- loading and export -----------------------------------------------------------------------------

    @classmethod
    def from_run(cls, run: str | os.PathLike, *, dataset_folder: str | None = None, cache_dir: str | None = None,
                 tokenizer_dir: str | None = None, device: str | torch.device = "auto") -> "Recommender":
        """A decoder run folder (<save_dir>/<dataset>-<split>, holding best.pt): its best.pt, stage 1's
        semantic_ids.pt and the data set's processed catalogue, all found from the bindings best.pt recorded
        (paths as given to training: relative ones are read from the current folder). The keyword arguments
        point elsewhere when the data, its cache or stage 1's run moved."""
        run = Path(run)
        best_path = run if run.is_file() else run / "best.pt"
        if not best_path.is_file():
            raise MissingFileError(f"no best.pt in {run}: give a decoder run folder (<save_dir>/<dataset>-<split>, "
                                   "written by train_decoder.py) or a model folder written by recommend.py --export")
        state = load_checkpoint(best_path)
        config = recorded_bindings(state["manifest"])
        for name, value in (("dataset_folder", dataset_folder), ("cache_dir", cache_dir), ("tokenizer_dir", tokenizer_dir)):
            if value is not None:
                config[name] = str(value)
        missing = [name for name in RUN_BINDINGS if name not in config]
        if missing:
            raise CheckpointError(f"{best_path} records no {', '.join('train.' + n for n in missing)}: it was written by "
                                  "an older train_decoder.py; evaluate it with evaluate.py and a config that binds them")
        tokenizer_file = existing_tokenizer_path(config["tokenizer_dir"], config["dataset"], config["split"])
        tokenizer = SemanticIdTokenizer.load(tokenizer_file)
        data = (config["dataset_folder"], config["dataset"], config["split"], config["cache_dir"])
        raw = load_processed(data[0], as_dataset(data[1]), data[2], data[3])
        check_trained_with(best_path, state, tokenizer_file, tokenizer.n_items, len(raw.item_ids), f"{data[1]}/{data[2]}")
        model = EncoderDecoderRetrievalModel(**state["model_kwargs"])
        model.load_state_dict(state["model"])
        source = {"checkpoint": str(best_path.resolve()), "step": state["manifest"]["step"],
                  "valid_metrics": state["manifest"]["metrics"], "dataset": data[1], "split": data[2]}
        successors = None
        if float(config.get(PRIOR_BINDING, 0.0)):  # counted on the training split, as evaluate.py counts them
            successors = transition_prior_table(SeqData(*data[:3], "train", config.get("max_seq_len"), data[3]))
        rec = cls(model, tokenizer, raw.item_ids, raw.titles, raw.user_ids, config=config, source=source, device=device,
                  successors=successors)
        rec.data = data
        return rec

    @classmethod
    def from_folder(cls, folder: str | os.PathLike, device: str | torch.device = "auto") -> "Recommender":
        """A model folder written by `export` (serving/model_folder.py): checked, and read without the data."""
        parts = read_model_folder(folder)
        model = EncoderDecoderRetrievalModel(**parts.model_kwargs)
        model.load_state_dict(parts.state_dict)
        return cls(model, parts.tokenizer, parts.item_ids, parts.titles, parts.user_ids, config=parts.config,
                   source=parts.source, device=device, successors=parts.successors)

    def export(self, folder: str | os.PathLike) -> Path:
        """Write everything `recommend` needs into a new folder that `from_folder` reads anywhere."""
        settings = {"max_seq_len": self.max_seq_len, "precision": self.precision, "protocol": self.protocol,
                    "beam_width": self.beam_width, "batch_size": self.batch_size}
        return write_model_folder(folder, ModelFolder(
            state_dict=self.model.state_dict(), model_kwargs=self.model.kwargs, tokenizer=self.tokenizer,
            item_ids=self.item_ids, titles=self.titles, user_ids=self.user_ids, config=self.config,
            settings=settings, source=self.source, successors=self.successors))

    # -- answering ----------------------------------------------------------------------------------------

    def recommend(self, history: Sequence[ItemId] | Sequence[Sequence[ItemId]], k: int = 10, *,
                  protocol: str | None = None, user: ItemId | Sequence[ItemId | None] | None = None,
                  ) -> list[Recommendation] | list[list[Recommendation]]:
        """The top-k items after `history`, best first.

        history: the data set's own item ids, oldest first (only the most recent max_seq_len are read), or a
                 list of such histories (a batch: one answer per history).
        protocol: "plain" (any item) or "history_skipped" (never an item of the history); default: the run's.
        user: the data set's own user id (a batch: one per history, None for none): that user's token is read,
              as evaluation reads it. Without it the user token is masked.
        Fewer than k come back only when the catalogue, less the skipped history, holds fewer."""
        if isinstance(history, (str, bytes)) or not isinstance(history, Sequence):
            raise RequestError(f"history must be a list of item ids (oldest first) or a list of such lists, "
                               f"got {type(history).__name__} {str(history)[:40]!r}")
        single = len(history) == 0 or not all(isinstance(h, Sequence) and not isinstance(h, str) for h in history)
        histories = [history] if single else list(history)
        users = [user] if single else ([None] * len(histories) if user is None else list(user))
        if len(users) != len(histories):
            raise RequestError(f"{len(histories)} histories but {len(users)} users: give one user (or None) per history")
        protocol = self.protocol if protocol is None else protocol
        if protocol not in PROTOCOLS:
            raise RequestError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
        if not 1 <= k <= len(self.item_ids):
            raise RequestError(f"k = {k}: must lie in 1..{len(self.item_ids):,} (the catalogue's size)")
        numbers = self.item_numbers(histories)
        user_numbers = self.user_numbers(users)
        items, scores = self.rank(numbers, user_numbers, k, skip_history=protocol == "history_skipped")
        answers = [[Recommendation(self.item_ids[i], self.titles[i], s) for i, s in zip(row_items, row_scores) if i >= 0]
                   for row_items, row_scores in zip(items.tolist(), scores.tolist())]
        return answers[0] if single else answers

    def item_numbers(self, histories: list[Sequence[ItemId]]) -> list[list[int]]:
        """Own item ids -> the model's item numbers; every unknown id is named (up to SHOWN_UNKNOWN), none guessed."""
        unknown = list(dict.fromkeys(str(i) for h in histories for i in h if str(i) not in self.item_index))
        if unknown:
            more = f" and {len(unknown) - SHOWN_UNKNOWN:,} more" if len(unknown) > SHOWN_UNKNOWN else ""
            raise RequestError(f"unknown item id{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(repr(i) for i in unknown[:SHOWN_UNKNOWN])}{more}: not in the catalogue of "
                               f"{self.name} ({len(self.item_ids):,} items)")
        empty = [row for row, h in enumerate(histories) if len(h) == 0]
        if empty:
            raise RequestError(f"history {empty[0]} is empty: the model answers after at least one item")
        return [[self.item_index[str(i)] for i in h] for h in histories]

    def user_numbers(self, users: list[ItemId | None]) -> list[int]:
        """Own user ids -> the model's user numbers (-1: no user, its token masked; with one user token for all,
        every history reads it, as in training)."""
        unknown = list(dict.fromkeys(str(u) for u in users if u is not None and str(u) not in self.user_index))
        if unknown:
            raise RequestError(f"unknown user id{'s' if len(unknown) > 1 else ''} "
                               f"{', '.join(repr(u) for u in unknown[:SHOWN_UNKNOWN])}: not a user of {self.name} "
                               f"({len(self.user_ids):,} users); leave user out to ask with the history alone")
        no_user = 0 if self.model.user_emb.n_buckets == 1 else -1
        return [no_user if u is None else self.user_index[str(u)] for u in users]

    @torch.no_grad()
    def rank(self, histories: list[list[int]], users: list[int], k: int, skip_history: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """histories: the model's item numbers, oldest first; users [B] (-1: none) -> (item numbers [B, k],
        -1 where fewer exist; scores [B, k]). The same search as evaluation's: chunks of the run's
        eval_batch_size, each history right-padded to the chunk's longest (as SeqData lays them out, trimmed
        as evaluate.py's eval_sort_by_length trims), beam width max(k, the run's eval_beam_width)."""
        beam_width = max(k, self.beam_width)
        found_items, found_scores = [], []
        for start in range(0, len(histories), self.batch_size):
            chunk, chunk_users = histories[start:start + self.batch_size], users[start:start + self.batch_size]
            read = padded([h[-self.max_seq_len:] for h in chunk], self.device)  # [B, L]: what the model reads
            codes = self.sem_ids[read.clamp(min=0)].masked_fill(read[..., None] < 0, -1)  # [B, L, T], as data_batch
            batch = {"user_ids": torch.tensor(chunk_users, device=self.device), "history": codes}
            # skipped: every item given, also those older than what the model reads (a deployed filter; evaluation's
            # histories are never longer than max_seq_len, so there both are the same)
            exclude = padded(chunk, self.device) if skip_history else None                    # [B, E]
            prior = None
            if self.successors is not None:  # what followed each history's last item in training
                last = torch.tensor([h[-1] for h in chunk], device=self.device)
                prior = (self.successors[0][last], self.successors[1][last])
            with precisions.autocast(self.device, self.precision):  # the precision validation chose best.pt in
                found = constrained_beam_search(self.model, batch, self.trie, beam_width, k, exclude, prior,
                                                self.prior_weight)
            found_items.append(found["item_ids"].cpu())
            found_scores.append(found["scores"].float().cpu())
        return torch.cat(found_items), torch.cat(found_scores)

    # -- the data set's users (a run only) ------------------------------------------------------------------

    def user_history(self, user: ItemId, split: str = "all") -> tuple[list[str], str | None]:
        """A user's history in the data set, own ids, oldest first, and the item held out after it:
        split "all": every item of the user (nothing held out: what they would be recommended next);
        "valid" / "test": the history that split evaluates with (its last max_seq_len items) and its target."""
        if split not in USER_SPLITS:
            raise RequestError(f"split {split!r}: expected one of {', '.join(USER_SPLITS)}")
        if self.data is None:
            raise RequestError("a model folder holds no user histories: ask with a history, or load the decoder run "
                               "folder (whose data set has them)")
        u = self.user_numbers([user])[0]
        root, dataset, data_split, cache_dir = self.data
        if split == "all":
            table = load_processed(root, as_dataset(dataset), data_split, cache_dir).interactions
            items = table.filter(table["user"] == u)["item"].to_list()  # oldest first (data/processed.py)
            return [self.item_ids[i] for i in items], None
        seqs = SeqData(root, dataset, data_split, split, self.max_seq_len, cache_dir)
        row = torch.nonzero(seqs.user_ids == u).flatten()[:1]  # every user has one valid and one test example
        history = seqs.history_batch(row)[0]
        return [self.item_ids[i] for i in history[history >= 0].tolist()], self.item_ids[int(seqs.targets[row[0]])]

    @property
    def name(self) -> str:
        return f"{self.source.get('dataset')}/{self.source.get('split')}"

    def __repr__(self) -> str:
        return (f"Recommender({self.name}: {len(self.item_ids):,} items, {len(self.user_ids):,} users, step "
                f"{self.source.get('step')}, protocol {self.protocol}, device {self.device})")


def padded(rows: list[list[int]], device: torch.device) -> torch.Tensor:
    """Lists of item numbers -> [B, longest] left-aligned, right-padded with -1 (SeqData's layout)."""
    out = torch.full((len(rows), max(len(r) for r in rows)), -1, dtype=torch.long)
    for b, row in enumerate(rows):
        out[b, :len(row)] = torch.tensor(row, dtype=torch.long)
    return out.to(device)


def load_recommender(path: str | os.PathLike, device: str | torch.device = "auto", **run_paths: str) -> Recommender:
    """A model folder (written by `Recommender.export` / recommend.py --export) or a decoder run folder
    (holding best.pt; `run_paths`: dataset_folder, cache_dir, tokenizer_dir where they moved)."""
    if is_model_folder(path):
        if run_paths:
            raise RequestError(f"{path} is a self-contained model folder: {', '.join(run_paths)} apply to run folders only")
        return Recommender.from_folder(path, device)
    return Recommender.from_run(path, device=device, **run_paths)
