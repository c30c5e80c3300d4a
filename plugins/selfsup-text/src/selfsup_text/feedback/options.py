"""Options of the text feedback components (pydantic only: importing this never imports torch)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from selfsup.options import Options


class SalientClozeOptions(Options):
    """Salient-span cloze after each round: closed-book (the question alone) and open-book (the
    passage BM25 retrieves for it, then the question) answers of the model, the knowledge gaps
    (closed-book wrong, open-book right), the gap curriculum and the self-training filter."""

    questions: int = Field(256, gt=0, description="Cloze questions asked per round: one salient span of each of "
                                                  "this many passages drawn at random (fewer if the data has fewer).")
    min_question_tokens: int = Field(4, gt=0, description="A question needs at least this many tokens besides "
                                                          "its answer.")
    max_question_tokens: int = Field(48, gt=0, description="The question is cut to this many tokens (the ones "
                                                           "nearest the answer are kept).")
    max_answer_tokens: int = Field(6, gt=0, description="Spans longer than this many tokens are not asked.")
    kinds: list[Literal["number", "date", "name"]] = Field(
        default_factory=lambda: ["number", "date", "name"], description="Which salient spans are asked.")
    top_k: int = Field(5, gt=0, description="Passages BM25 retrieves per question (recall@k is reported); the "
                                            "first is given to the open-book question.")
    gap_weight: float = Field(2.0, ge=0, description="Curriculum: passage i's weight is 1 + gap_weight x (gaps "
                                                     "asked from it), then all weights are scaled to mean 1.")
    appended_weight: float = Field(1.0, gt=0, description="Sampling weight of an appended self-training sample "
                                                          "(before the scaling to mean 1).")
    confidence_threshold: float = Field(0.5, ge=0, le=1, description="Self-training: an answer is added only when "
                                        "its closed-book and open-book answers agree and both confidences reach it.")
    temperature: float = Field(1.0, gt=0, description="Softmax temperature of the confidences.")
    self_training: bool = Field(True, description="Append the accepted self-answered questions as training samples.")
    appended_form: Literal["closed", "open", "both"] = Field(
        "both", description="An accepted question becomes a sample as the question with the model's answer "
                            "filled in ('closed'), the retrieved passage followed by it ('open', the open-book "
                            "phase), or both.")
    reading: int = Field(
        0, ge=0, description="Open-book training (REALM's salient span masking with a retrieved passage): each "
        "round appends up to this many samples made from the data alone, a salient span's sentence (with the span "
        "the corpus holds, not the model's answer) after the passage BM25 retrieves for it, so the model learns to "
        "read its sources. 0: none (the open book is then only asked, never trained).")
    reading_counterfactual: float = Field(
        0.0, ge=0, le=1, description="Share of the reading samples whose span is swapped, in the passage and in the "
        "sentence alike, for the span of another reading question of the same kind: the swapped fact is in no "
        "training text, so the only way to predict it is to read the passage (a memorised answer is wrong).")
    curriculum: bool = Field(True, description="Up-weight the passages that hold the gap answers (false: uniform "
                                               "weights over the data, appended samples at appended_weight).")
    k1: float = Field(1.5, gt=0, description="BM25 k1.")
    b: float = Field(0.75, ge=0, le=1, description="BM25 b.")

    @model_validator(mode="after")
    def _check(self) -> "SalientClozeOptions":
        if self.min_question_tokens > self.max_question_tokens:
            raise ValueError(f"min_question_tokens = {self.min_question_tokens} is above max_question_tokens = "
                             f"{self.max_question_tokens}")
        if not self.kinds:
            raise ValueError("kinds is empty: no span would be asked")
        return self
