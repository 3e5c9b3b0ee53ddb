"""Online variational Bayes LDA, the E-step vectorised over whole mini-batches.

The fitting half of `lda` (Apache Spot's suspicious connects): scikit-learn's
online algorithm (Hoffman et al. 2010; same updates, priors, learning rate and
mini-batches) with the per-document E-step loop replaced by sparse products
over a whole mini-batch, and the topic mix of documents with the topics held
fixed (`infer_topics`, what sklearn's ``transform`` runs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.special import digamma


def dirichlet_expectation(a: np.ndarray) -> np.ndarray:
    """E[log x] for x ~ Dirichlet(a), row-wise."""
    return digamma(a) - digamma(a.sum(axis=1, keepdims=True))


def _estep(
    counts: sp.csr_matrix,
    exp_beta: np.ndarray,
    alpha: float,
    gamma: np.ndarray,
    max_iter: int,
    tol: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Variational E-step for all rows of `counts` at once: (gamma, sufficient statistics).

    The update of sklearn's ``_update_doc_distribution``, with sparse products
    over the whole batch instead of a Python loop per document (the loop is
    where sklearn's online LDA spends its time when documents are many).
    """
    counts = sp.csr_matrix(counts)
    counts.sum_duplicates()
    indptr, cols = counts.indptr, counts.indices
    per_row = np.diff(indptr)
    vals = counts.data.astype(np.float64)
    # float32 for the nnz x K products: they are the memory traffic of the loop
    beta_nz = np.ascontiguousarray(exp_beta[:, cols].T, dtype=np.float32)
    beta_t = np.ascontiguousarray(exp_beta.T)
    exp_theta = np.exp(dirichlet_expectation(gamma))

    def weights() -> sp.csr_matrix:
        spread = np.repeat(exp_theta.astype(np.float32), per_row, axis=0)
        norm = np.einsum("ij,ij->i", spread, beta_nz).astype(np.float64) + 1e-100
        # the structure of `counts` is reused: no sorting per iteration
        return sp.csr_matrix((vals / norm, cols, indptr), shape=counts.shape)

    for _ in range(max_iter):
        new = alpha + exp_theta * (weights() @ beta_t)
        done = np.abs(new - gamma).mean() < tol
        gamma = new
        exp_theta = np.exp(dirichlet_expectation(gamma))
        if done:
            break
    sstats = np.asarray((weights().T @ exp_theta).T) * exp_beta  # K x V
    return gamma, sstats


def infer_topics(
    counts: sp.csr_matrix,
    components: np.ndarray,
    alpha: float,
    max_iter: int = 100,
    tol: float = 1e-3,
) -> np.ndarray:
    """Topic mix (normalised) of each row of `counts` with the topics held fixed."""
    n, k = counts.shape[0], components.shape[0]
    if n == 0:
        return np.zeros((0, k))
    exp_beta = np.exp(dirichlet_expectation(components.astype(np.float64)))
    gamma, _ = _estep(counts, exp_beta, alpha, np.ones((n, k)), max_iter, tol)
    return gamma / gamma.sum(axis=1, keepdims=True)


def online_lda(x: sp.csr_matrix, prm: dict[str, Any]) -> tuple[np.ndarray, float, float]:
    """Online variational Bayes LDA (Hoffman et al. 2010, sklearn's ``learning_method="online"``).

    The same updates and defaults as `sklearn.decomposition.LatentDirichletAllocation`
    (priors 1/K, learning rate ``(offset + t) ** -decay``, documents in order,
    mini-batches of `batch_size`), the E-step vectorised per mini-batch.
    Returns (components_, doc_topic_prior, topic_word_prior).
    """
    k = int(prm["n_components"])
    alpha = float(prm.get("doc_topic_prior") or 1.0 / k)
    eta = float(prm.get("topic_word_prior") or 1.0 / k)
    rng = np.random.RandomState(int(prm["random_state"]))
    n_docs = x.shape[0]
    lam = rng.gamma(100.0, 0.01, (k, x.shape[1]))
    exp_beta = np.exp(dirichlet_expectation(lam))
    bs = max(1, int(prm["batch_size"]))
    t = 1
    for _ in range(int(prm["max_iter"])):
        for lo in range(0, n_docs, bs):
            batch = x[lo : lo + bs]
            gamma0 = rng.gamma(100.0, 0.01, (batch.shape[0], k))
            _, sstats = _estep(
                batch, exp_beta, alpha, gamma0, int(prm["max_doc_update_iter"]), 1e-3
            )
            rho = (float(prm["learning_offset"]) + t) ** -float(prm["learning_decay"])
            lam = (1 - rho) * lam + rho * (eta + (n_docs / batch.shape[0]) * sstats)
            exp_beta = np.exp(dirichlet_expectation(lam))
            t += 1
    return lam, alpha, eta
