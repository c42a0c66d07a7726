"""A FLAME-format model restricted to its landmarks, with exact analytic Jacobians.

The fitter never needs the 5023 vertices, only the landmarks, and those are linear in the
coefficients up to the skinning of the few landmarks a leaf joint (jaw, eyes) moves. This module
folds the barycentric embedding into landmark-level bases once per model and evaluates landmarks in
pixels, the Jacobian with respect to the per-frame parameters (:meth:`LandmarkModel.jacobian`), and
products of its transpose with per-landmark covectors (:meth:`LandmarkModel.pullback`: the gradient
without forming the Jacobian), in closed form.

Kinematics: FLAME's tree [global, neck, jaw, eye_left, eye_right] with parents [-1, 0, 1, 1, 1]. The
neck is held at zero: for facial landmarks a neck rotation is indistinguishable from a global
rotation plus a translation (every landmark moves rigidly with the head), so it is a gauge freedom,
not an observable; all head rotation goes into ``global``. With the global and neck rotations at
identity, a vertex v posed by the leaf joints j ∈ {jaw, eye_left, eye_right} is

    q = v + Σ_j w_j (R_j − I)(v − J_j),   v = template + S·β + E·ψ + P·vec(R_leaf − I)

and a landmark, a barycentric combination of vertices, is ``q_l = v_l + (R_j − I)(v̂_l − ŵ_l J_j)``
with landmark-level bases v_l (combined vertices) and, where a leaf joint moves the landmark, the
weight-blended point v̂_l and weight ŵ_l of that joint (exact; the fitter requires at most one leaf
joint per landmark, true of FLAME's and the demo head's embeddings).

Rigid motion is parametrized about a fixed pivot c (the template landmarks' centroid):
X = R_g (q − c) + c + τ. That keeps rotation and translation nearly decoupled (a well-conditioned
normal matrix) and τ is the motion of the face centre, which is what the smoothness prior should
see. FLAME's translation is t = τ + (R_g − I)(J_0 − c) (:meth:`LandmarkModel.flame_transl`).

Per-frame parameter vector (P = 15 + E): global rotation (3, axis-angle), τ (3), jaw (3), eye_left
(3), eye_right (3), expression (E). Landmarks are stored with the leaf-skinned ones first, grouped by
joint (``pair_counts``); ``mp_indices`` gives each row's MediaPipe index. Shape letters: B tracks or
chunks, T frames, L landmarks, Q leaf-skinned landmarks (Q ≤ L), S shape and E expression coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from flameqa.fit.camera import project, project_with_jacobian

#: Offsets of the parameter blocks inside the per-frame vector.
ROT, TRANSL, JAW, EYE_L, EYE_R, EXPR = 0, 3, 6, 9, 12, 15
N_POSE = 15
FLAME_PARENTS = (-1, 0, 1, 1, 1)
LEAF_JOINTS = (2, 3, 4)


def rodrigues(rotvec: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` → rotation matrices ``[..., 3, 3]`` (exact at zero)."""
    from flameqa.flame.lbs import axis_angle_to_matrix

    return axis_angle_to_matrix(rotvec)


def _cross(a: Tensor, b: Tensor) -> Tensor:
    """a × b over the last dim, broadcasting (cheaper than ``torch.linalg.cross`` on expanded inputs)."""
    a0, a1, a2 = a[..., 0], a[..., 1], a[..., 2]
    b0, b1, b2 = b[..., 0], b[..., 1], b[..., 2]
    return torch.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], dim=-1)


def _skew(v: Tensor) -> Tensor:
    x, y, z = v.unbind(-1)
    o = torch.zeros_like(x)
    return torch.stack([o, -z, y, z, o, -x, -y, x, o], dim=-1).reshape(*v.shape[:-1], 3, 3)


def rodrigues_with_jacobian(rotvec: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation matrices and their left Jacobians.

    R = I + a K + b K² and J_l = I + b K + c K², K = skew(r), θ = |r|, a = sin θ/θ,
    b = (1 − cos θ)/θ², c = (θ − sin θ)/θ³ (Taylor series near 0). J_l maps a change of the
    axis-angle vector to the rotation it adds on the left: R(r + δ) ≈ exp(skew(J_l δ)) R(r), so
    ∂(R y)/∂r = −skew(R y) J_l.

    Args:
        rotvec: ``[..., 3]`` axis-angle.

    Returns:
        R ``[..., 3, 3]`` and J_l ``[..., 3, 3]``.
    """
    th2 = (rotvec * rotvec).sum(-1)[..., None, None]  # [...,1,1]
    small = th2 < 1e-4
    safe = torch.where(small, torch.ones_like(th2), th2)
    th = safe.sqrt()
    sa, ca = torch.sin(th), torch.cos(th)
    a = torch.where(small, 1 - th2 / 6 + th2 * th2 / 120, sa / th)
    b = torch.where(small, 0.5 - th2 / 24 + th2 * th2 / 720, (1 - ca) / safe)
    c = torch.where(small, 1.0 / 6 - th2 / 120 + th2 * th2 / 5040, (th - sa) / (safe * th))
    k = _skew(rotvec)
    k2 = k @ k
    eye = torch.eye(3, dtype=rotvec.dtype, device=rotvec.device)
    return eye + a * k + b * k2, eye + b * k + c * k2


def _basis_product(m: Tensor, basis: Tensor, out: Tensor | None = None) -> Tensor:
    """``out[..., l, r, k] = Σ_c m[..., l, r, c] basis[l, c, k]`` for m ``[..., L, R, 3]``, basis ``[L, 3, K]``.

    Three broadcast multiply-adds written straight into ``out`` (may be a strided view of a larger
    tensor): no permuted copies of the (large) result.
    """
    if out is None:
        out = m[..., 0:1] * basis[:, None, 0]
    else:
        torch.mul(m[..., 0:1], basis[:, None, 0], out=out)
    out.addcmul_(m[..., 1:2], basis[:, None, 1])
    out.addcmul_(m[..., 2:3], basis[:, None, 2])
    return out


@dataclass
class ShapeState:
    """Identity-dependent parts, per track: ``beta [B, S]``, landmark base ``[B, L, 3]`` (template +
    S·β), leaf-pair base ``[B, Q, 3]``, rest joints ``[B, 5, 3]``."""

    beta: Tensor
    base: Tensor
    pair_base: Tensor
    joints: Tensor

    def select(self, rows: slice) -> ShapeState:
        return ShapeState(self.beta[rows], self.base[rows], self.pair_base[rows], self.joints[rows])


@dataclass
class Eval:
    """Intermediates of one evaluation (all ``[B, T, ...]``)."""

    uv: Tensor  # [B,T,L,2]
    pts: Tensor  # [B,T,L,3] camera frame
    a: Tensor  # [B,T,L,3] R_g (q − c)
    dp: Tensor  # [B,T,L,2,3] d(uv)/d(pts)
    rg: Tensor  # [B,T,3,3]
    jg: Tensor  # [B,T,3,3] left Jacobian of the global rotation
    rot_leaf: Tensor  # [B,T,3,3,3]
    jac_leaf: Tensor  # [B,T,3,3,3] left Jacobians of the leaf rotations
    pair_b: Tensor  # [B,T,Q,3] R_j (v̂ − ŵ J_j)


@dataclass
class LandmarkModel:
    """Landmark-level model arrays (one device, one float dtype).

    Attributes:
        template ``[L, 3]``, shapedirs ``[L, 3, S]``, exprdirs ``[L, 3, E]``, posedirs ``[L, 3, 27]``
        (jaw, eye_left, eye_right blocks of 9, row-major R − I): barycentric combinations.
        pair_counts: landmarks skinned to (jaw, eye_left, eye_right): rows ``[0, n_jaw)``, then the
        eyes'; pair_w ``[Q]`` and pair_template / pair_shapedirs / pair_exprdirs / pair_posedirs: the
        weight-blended bases v̂ of those rows.
        j_template ``[5, 3]``, j_shapedirs ``[5, 3, S]``, j_exprdirs ``[5, 3, E]``: rest joints.
        centre ``[3]``: the rigid-motion pivot c.
        shape_a ``[L, 3, S]``, shape_c ``[Q, 3, S]``, expr_a, expr_c: Jacobian bases,
        ∂q_l/∂coef = A_l + R_j C_l with C = D̂ − ŵ D_Jj and A = D − C (A = D on unskinned rows).
        normals ``[L, 3]``: template surface normals; mp_indices ``[L]``: MediaPipe index per row.
    """

    template: Tensor
    shapedirs: Tensor
    exprdirs: Tensor
    posedirs: Tensor
    pair_w: Tensor
    pair_template: Tensor
    pair_shapedirs: Tensor
    pair_exprdirs: Tensor
    pair_posedirs: Tensor
    j_template: Tensor
    j_shapedirs: Tensor
    j_exprdirs: Tensor
    centre: Tensor
    shape_a: Tensor
    shape_c: Tensor
    expr_a: Tensor
    expr_c: Tensor
    normals: Tensor
    mp_indices: Tensor
    pair_counts: tuple[int, int, int] = (0, 0, 0)
    has_posedirs: bool = True
    model_id: str = ""

    # ------------------------------------------------------------------------------------------
    @property
    def n_shape(self) -> int:
        return int(self.shapedirs.shape[-1])

    @property
    def n_expr(self) -> int:
        return int(self.exprdirs.shape[-1])

    @property
    def n_params(self) -> int:
        return N_POSE + self.n_expr

    @property
    def n_landmarks(self) -> int:
        return int(self.template.shape[0])

    @property
    def n_pairs(self) -> int:
        return int(sum(self.pair_counts))

    @property
    def device(self) -> torch.device:
        return self.template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.template.dtype

    def _segments(self) -> list[tuple[int, int, int]]:
        """(joint, first row, end row) of each leaf joint's landmarks."""
        out, s = [], 0
        for j, n in enumerate(self.pair_counts):
            out.append((j, s, s + n))
            s += n
        return out

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LandmarkModel:
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
            kw[f.name] = v
        return LandmarkModel(**kw)

    def subset(self, rows: Tensor | np.ndarray) -> LandmarkModel:
        """The model restricted to landmark ``rows`` (kept in ascending order, so skinned rows stay first)."""
        rows = torch.as_tensor(np.sort(np.asarray(torch.as_tensor(rows).cpu())), dtype=torch.long, device=self.device)
        kw = {f.name: getattr(self, f.name) for f in fields(self)}
        for k in ("template", "shapedirs", "exprdirs", "posedirs", "normals", "mp_indices", "shape_a", "expr_a"):
            kw[k] = kw[k][rows]
        prow = rows[rows < self.n_pairs]
        for k in ("pair_w", "pair_template", "pair_shapedirs", "pair_exprdirs", "pair_posedirs", "shape_c", "expr_c"):
            kw[k] = kw[k][prow]
        counts = []
        for _, s, e in self._segments():
            counts.append(int(((prow >= s) & (prow < e)).sum()))
        kw["pair_counts"] = tuple(counts)
        return LandmarkModel(**kw)

    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_arrays(
        cls,
        *,
        v_template: np.ndarray | Tensor,
        shapedirs: np.ndarray | Tensor,
        exprdirs: np.ndarray | Tensor,
        posedirs: np.ndarray | Tensor,
        j_regressor: np.ndarray | Tensor,
        weights: np.ndarray | Tensor,
        parents: tuple[int, ...] | list[int],
        faces: np.ndarray | Tensor,
        lmk_faces_idx: np.ndarray | Tensor,
        lmk_bary: np.ndarray | Tensor,
        mp_indices: np.ndarray | Tensor,
        model_id: str = "",
        dtype: torch.dtype = torch.float32,
    ) -> LandmarkModel:
        """Fold full model arrays (FLAME layout) into landmark-level bases.

        ``shapedirs [V, 3, S]`` and ``exprdirs [V, 3, E]`` are the already truncated bases;
        ``posedirs [V, 3, 36]``; ``j_regressor [5, V]``; ``weights [V, 5]``; ``faces [F, 3]``;
        ``lmk_faces_idx [L]``, ``lmk_bary [L, 3]``.
        """

        def f64(a: np.ndarray | Tensor) -> Tensor:
            return torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a), dtype=torch.float64)

        def i64(a: np.ndarray | Tensor) -> Tensor:
            return torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a), dtype=torch.long)

        if tuple(int(p) for p in parents) != FLAME_PARENTS:
            raise ValueError(f"the fitter needs FLAME's kinematic tree (parents {FLAME_PARENTS}), got {tuple(parents)}")
        v, sd, ed, pd = f64(v_template), f64(shapedirs), f64(exprdirs), f64(posedirs)[:, :, 9:36]  # neck block dropped
        jr, w = f64(j_regressor), f64(weights)
        f, lf, lb = i64(faces), i64(lmk_faces_idx), f64(lmk_bary)
        tri = f[lf]  # [L,3] vertex ids of each landmark's triangle
        wl = w[:, list(LEAF_JOINTS)]  # [V,3j]
        # w_hat[l, j] = sum_n bary[l, n] w[tri[l, n], j]
        w_hat = torch.einsum("ln,lnj->lj", lb, wl[tri])
        moved = w_hat.abs() > 1e-9
        if bool((moved.sum(1) > 1).any()):
            bad = torch.nonzero(moved.sum(1) > 1).squeeze(1).tolist()
            raise ValueError(f"landmarks {bad[:5]} are skinned to more than one of jaw/eyes; the fitter supports one leaf joint per landmark")
        joint = torch.where(moved.any(1), moved.to(torch.long).argmax(1), torch.full_like(moved[:, 0], 3, dtype=torch.long))
        order = torch.sort(joint, stable=True).indices  # skinned rows first, grouped by joint
        tri, lb, joint, w_hat = tri[order], lb[order], joint[order], w_hat[order]
        nq = int((joint < 3).sum())
        counts = tuple(int((joint == j).sum()) for j in range(3))
        pj = joint[:nq]

        def combine(a: Tensor) -> Tensor:  # per-vertex [V, ...] → per-landmark [L, ...]
            # out[l, ...] = sum_n bary[l, n] a[tri[l, n], ...]
            return torch.einsum("ln,ln...->l...", lb, a[tri])

        def pair_combine(a: Tensor) -> Tensor:  # Σ_n bary · w_j · a on skinned rows
            coef = lb[:nq] * wl[tri[:nq], pj[:, None]]  # [Q,3]
            # out[q, ...] = sum_n coef[q, n] a[tri[q, n], ...]
            return torch.einsum("qn,qn...->q...", coef, a[tri[:nq]])

        # rest joints as linear functions: j[j, c] = sum_v jr[j, v] v[v, c] (+ the same for each basis)
        j_t = torch.einsum("jv,vc->jc", jr, v)
        j_s = torch.einsum("jv,vcs->jcs", jr, sd)
        j_e = torch.einsum("jv,vce->jce", jr, ed)
        pw = w_hat[:nq].gather(1, pj[:, None])[:, 0]

        def jac_bases(d: Tensor, pdirs: Tensor, jd: Tensor) -> tuple[Tensor, Tensor]:
            c = pdirs - pw[:, None, None] * jd[2:5][pj]  # C = D̂ − ŵ D_Jj   [Q,3,K]
            a = d.clone()
            a[:nq] -= c
            return a, c

        sdl, edl = combine(sd), combine(ed)
        psd, ped = pair_combine(sd), pair_combine(ed)
        sa, sc = jac_bases(sdl, psd, j_s)
        ea, ec = jac_bases(edl, ped, j_e)
        # template vertex normals (area-weighted face normals), interpolated at the landmarks
        fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
        vn = torch.zeros_like(v)
        for k in range(3):
            vn.index_add_(0, f[:, k], fn)
        n_l = combine(vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12))
        n_l = n_l / n_l.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        tl = combine(v)
        out = cls(
            template=tl,
            shapedirs=sdl,
            exprdirs=edl,
            posedirs=combine(pd),
            pair_w=pw,
            pair_template=pair_combine(v),
            pair_shapedirs=psd,
            pair_exprdirs=ped,
            pair_posedirs=pair_combine(pd),
            j_template=j_t,
            j_shapedirs=j_s,
            j_exprdirs=j_e,
            centre=tl.mean(0),
            shape_a=sa,
            shape_c=sc,
            expr_a=ea,
            expr_c=ec,
            normals=n_l,
            mp_indices=i64(mp_indices)[order],
            pair_counts=counts,  # type: ignore[arg-type]
            has_posedirs=bool(pd.abs().max() > 0) if pd.numel() else False,
            model_id=model_id,
        )
        return out.to(dtype=dtype)

    @classmethod
    def from_layer(cls, layer: torch.nn.Module, dtype: torch.dtype = torch.float32) -> LandmarkModel:
        """Build from a :class:`flameqa.flame.FlameLayer` (its buffers hold the truncated bases)."""
        n_shape = int(layer.n_shape)
        sd = layer.shapedirs  # [V, 3, n_shape + n_expr]
        return cls.from_arrays(
            v_template=layer.v_template,
            shapedirs=sd[..., :n_shape],
            exprdirs=sd[..., n_shape:],
            posedirs=layer.posedirs,
            j_regressor=layer.J_regressor,
            weights=layer.lbs_weights,
            parents=tuple(int(p) for p in layer.parents.tolist()),
            faces=layer.faces,
            lmk_faces_idx=layer.lmk_faces_idx,
            lmk_bary=layer.lmk_bary,
            mp_indices=layer.mp_indices,
            model_id=str(layer.model_id),
            dtype=dtype,
        )

    # ------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------

    def shape_state(self, beta: Tensor) -> ShapeState:
        """Precompute the identity-dependent parts for ``beta [B, S]``."""
        # base[b, l, c] = template[l, c] + sum_s shapedirs[l, c, s] β[b, s]
        base = self.template + torch.einsum("lcs,bs->blc", self.shapedirs, beta)
        pair = self.pair_template + torch.einsum("qcs,bs->bqc", self.pair_shapedirs, beta)
        joints = self.j_template + torch.einsum("jcs,bs->bjc", self.j_shapedirs, beta)
        return ShapeState(beta, base, pair, joints)

    @staticmethod
    def _lin(dirs: Tensor, coef: Tensor) -> Tensor:
        """``[B, T, n, 3]`` offsets ``dirs [n, 3, K] · coef [B, T, K]`` as one matrix product."""
        n = dirs.shape[0]
        return (coef @ dirs.reshape(n * 3, -1).T).reshape(*coef.shape[:-1], n, 3)

    def joints(self, st: ShapeState, x: Tensor) -> Tensor:
        """Rest joints ``[B, T, 5, 3]``."""
        return st.joints[:, None] + self._lin(self.j_exprdirs, x[..., EXPR:])

    def evaluate(self, st: ShapeState, x: Tensor, intr: Tensor, *, derivatives: bool = False, points: bool = False) -> Eval | Tensor:
        """Pixels of every landmark.

        Args:
            st: :meth:`shape_state` of the B tracks; x: ``[B, T, P]``; intr: ``[B, 3]`` (focal, cx, cy).
            derivatives: return an :class:`Eval` with what :meth:`jacobian` / :meth:`pullback` need.
            points: return the camera-frame points ``[B, T, L, 3]`` instead of pixels.

        Returns:
            ``uv [B, T, L, 2]`` (default), the points, or an :class:`Eval`.
        """
        expr = x[..., EXPR:]
        leaf = x[..., JAW:EXPR].reshape(*x.shape[:-1], 3, 3)  # [B,T,3 joints,3]
        if derivatives:
            rot, jl = rodrigues_with_jacobian(leaf)
            rg, jg = rodrigues_with_jacobian(x[..., ROT:ROT + 3])
        else:
            rot, rg = rodrigues(leaf), rodrigues(x[..., ROT:ROT + 3])
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        q = st.base[:, None] + self._lin(self.exprdirs, expr)  # [B,T,L,3]
        nq = self.n_pairs
        pair_b = None
        if nq:
            pv = st.pair_base[:, None] + self._lin(self.pair_exprdirs, expr)  # [B,T,Q,3]
            if self.has_posedirs:
                pf = (rot - eye).reshape(*rot.shape[:-3], 27)
                q = q + self._lin(self.posedirs, pf)
                pv = pv + self._lin(self.pair_posedirs, pf)
            joints = self.joints(st, x)
            ds, bs = [], []
            for j, s, e in self._segments():
                if e > s:
                    d = pv[..., s:e, :] - self.pair_w[s:e, None] * joints[..., 2 + j, None, :]  # v̂ − ŵ J_j
                    ds.append(d)
                    bs.append(d @ rot[..., j, :, :].transpose(-1, -2))  # R_j (v̂ − ŵ J_j)
            pair_b = torch.cat(bs, dim=-2)
            # q_l += (R_j − I)(v̂ − ŵ J_j) on the skinned rows
            dq = pair_b - torch.cat(ds, dim=-2)
            q = torch.cat([q[..., :nq, :] + dq, q[..., nq:, :]], dim=-2)
        elif self.has_posedirs:
            q = q + self._lin(self.posedirs, (rot - eye).reshape(*rot.shape[:-3], 27))
        # a = R_g (q − c);  X = a + c + τ
        a = (q - self.centre) @ rg.transpose(-1, -2)
        pts = a + (self.centre + x[..., TRANSL:TRANSL + 3])[..., None, :]
        if points:
            return pts
        kin = intr[:, None, None, :]
        if not derivatives:
            return project(pts, kin)
        uv, dp = project_with_jacobian(pts, kin)
        if pair_b is None:
            pair_b = x.new_zeros(*x.shape[:-1], 0, 3)
        return Eval(uv=uv, pts=pts, a=a, dp=dp, rg=rg, jg=jg, rot_leaf=rot, jac_leaf=jl, pair_b=pair_b)

    def project(self, beta: Tensor, x: Tensor, intr: Tensor) -> Tensor:
        """Pixels ``[B, T, L, 2]`` for shape ``[B, S]``, parameters ``[B, T, P]``, intrinsics ``[B, 3]``."""
        return self.evaluate(self.shape_state(beta), x, intr)

    def camera_points(self, beta: Tensor, x: Tensor) -> Tensor:
        """Landmarks ``[B, T, L, 3]`` in the camera frame."""
        intr = torch.ones(beta.shape[0], 3, dtype=x.dtype, device=x.device)
        return self.evaluate(self.shape_state(beta), x, intr, points=True)

    def head_points(self, beta: Tensor, x: Tensor) -> Tensor:
        """Landmarks ``[B, T, L, 3]`` in the model frame (no global rotation, no translation)."""
        x0 = x.clone()
        x0[..., ROT:ROT + 3] = 0
        x0[..., TRANSL:TRANSL + 3] = -self.centre
        return self.camera_points(beta, x0)

    # ------------------------------------------------------------------------------------------
    # translation conventions
    # ------------------------------------------------------------------------------------------

    def flame_transl(self, beta: Tensor, x: Tensor) -> Tensor:
        """FLAME's ``transl`` ``[B, T, 3]`` of internal parameters: t = τ + (R_g − I)(J_0 − c)."""
        j0 = self.joints(self.shape_state(beta), x)[..., 0, :] - self.centre
        rg = rodrigues(x[..., ROT:ROT + 3])
        return x[..., TRANSL:TRANSL + 3] + (rg @ j0[..., None])[..., 0] - j0

    def internal_transl(self, beta: Tensor, x_flame: Tensor) -> Tensor:
        """τ ``[B, T, 3]`` of parameters whose translation slot holds FLAME's t."""
        j0 = self.joints(self.shape_state(beta), x_flame)[..., 0, :] - self.centre
        rg = rodrigues(x_flame[..., ROT:ROT + 3])
        return x_flame[..., TRANSL:TRANSL + 3] - (rg @ j0[..., None])[..., 0] + j0

    # ------------------------------------------------------------------------------------------
    # derivatives
    # ------------------------------------------------------------------------------------------

    def _posedirs_jac(self, ev: Eval) -> Tensor:
        """``[B, T, 27, 9]``: d vec(R_leaf − I) / d(leaf axis-angles), block diagonal.

        From ∂R/∂r_i = skew(J_l e_i) R for each joint.
        """
        b, t = ev.rot_leaf.shape[:2]
        out = ev.rot_leaf.new_zeros(b, t, 27, 9)
        for j in range(3):
            g = _skew(ev.jac_leaf[..., j, :, :].transpose(-1, -2))  # [B,T,3i,3,3] = skew(J_l e_i)
            d = g @ ev.rot_leaf[..., j, None, :, :]  # [B,T,3i,3,3]
            out[..., 9 * j:9 * j + 9, 3 * j:3 * j + 3] = d.reshape(b, t, 3, 9).transpose(-1, -2)
        return out

    @staticmethod
    def _head_rows(dp: Tensor, rg: Tensor) -> Tensor:
        """Q = dP·R_g ``[B, T, L, 2, 3]``: pixel derivative w.r.t. a head-frame displacement."""
        b, t, nl = dp.shape[:3]
        return (dp.reshape(b, t, nl * 2, 3) @ rg).reshape(b, t, nl, 2, 3)

    def jacobian(self, ev: Eval, row_scale: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """``d(uv)/dx`` ``[B, T, L, 2, P]``, each landmark's two rows scaled by ``row_scale [B, T, L]``.

        ``out``: a buffer to write into (at least B·T·L·2·P elements); reusing one across calls
        avoids fresh page faults on a buffer of hundreds of MB per call.
        """
        dp = ev.dp if row_scale is None else ev.dp * row_scale[..., None, None]
        b, t, nl = dp.shape[:3]
        jac = _buffer(out, (b, t, nl, 2, self.n_params), dp)
        # global rotation: d(R y)/dr = −skew(R y) J_l, and u·(−skew(a)) = (a × u)
        cr = _cross(ev.a[..., None, :], dp)  # [B,T,L,2,3]
        jac[..., ROT:ROT + 3] = (cr.reshape(b, t, nl * 2, 3) @ ev.jg).reshape(b, t, nl, 2, 3)
        jac[..., TRANSL:TRANSL + 3] = dp
        qm = self._head_rows(dp, ev.rg)
        self._leaf_block(ev, qm, jac[..., JAW:EXPR])
        self._coef_block(ev, qm, shape=False, out=jac[..., EXPR:])
        return jac

    def shape_jacobian(self, ev: Eval, row_scale: Tensor | None = None, out: Tensor | None = None) -> Tensor:
        """``d(uv)/dβ`` ``[B, T, L, 2, S]`` (rows scaled like :meth:`jacobian`; ``out`` likewise)."""
        dp = ev.dp if row_scale is None else ev.dp * row_scale[..., None, None]
        b, t, nl = dp.shape[:3]
        return self._coef_block(ev, self._head_rows(dp, ev.rg), shape=True, out=_buffer(out, (b, t, nl, 2, self.n_shape), dp))

    def _coef_block(self, ev: Eval, qm: Tensor, *, shape: bool, out: Tensor | None = None) -> Tensor:
        """d uv / d(coefficients) of a linear basis, ``Q A_l + (Q R_j) C_l`` (written into ``out``).

        Broadcast multiply-adds (three per 3-vector contraction) written straight into the strided
        output; no permuted copies of the (large) result.
        """
        a, c = (self.shape_a, self.shape_c) if shape else (self.expr_a, self.expr_c)
        out = _basis_product(qm, a, out)
        nq = self.n_pairs
        if nq:
            qr = torch.cat(
                [qm[..., s:e, :, :] @ ev.rot_leaf[..., j, None, :, :] for j, s, e in self._segments() if e > s], dim=2
            )  # Q R_j on the skinned rows  [B,T,Q,2,3]
            o = out[..., :nq, :, :]
            for d in range(3):
                o.addcmul_(qr[..., d:d + 1], c[:, None, d])
        return out

    def _leaf_block(self, ev: Eval, qm: Tensor, jl: Tensor) -> Tensor:
        """Write d uv / d(jaw, eye_left, eye_right) into ``jl [B, T, L, 2, 9]``."""
        b, t, nl = qm.shape[:3]
        jl.zero_()
        for j, s, e in self._segments():
            if e > s:
                # dq/dr_j = −skew(b) J_l,j on this joint's rows
                cr = _cross(ev.pair_b[..., s:e, None, :], qm[..., s:e, :, :])
                jl[..., s:e, :, 3 * j:3 * j + 3] = (cr.reshape(b, t, (e - s) * 2, 3) @ ev.jac_leaf[..., j, :, :]).reshape(b, t, e - s, 2, 3)
        if self.has_posedirs:
            dpf = self._posedirs_jac(ev)  # [B,T,27,9]
            # posed correctives move every landmark: dq_l = P_l dpf (+ R_j on the skinned part)
            dvp = torch.einsum("lcp,btpk->btlck", self.posedirs, dpf)
            nq = self.n_pairs
            if nq:
                dpv = torch.einsum("qcp,btpk->btqck", self.pair_posedirs, dpf)
                rs = torch.cat([ev.rot_leaf[..., j, None, :, :].expand(b, t, e - s, 3, 3) for j, s, e in self._segments() if e > s], dim=2)
                eye = torch.eye(3, dtype=qm.dtype, device=qm.device)
                dvp = torch.cat([dvp[..., :nq, :, :] + (rs - eye) @ dpv, dvp[..., nq:, :, :]], dim=2)
            jl += qm @ dvp
        return jl

    def pullback(self, ev: Eval, cov: Tensor) -> Tensor:
        """``Σ_l (∂X_l/∂x)ᵀ cov_l`` ``[B, T, P]`` for camera-frame covectors ``cov [B, T, L, 3]``.

        With ``cov = dPᵀ (w·r)`` this is the data gradient Jᵀ W r, without forming J.
        """
        b, t = cov.shape[:2]
        g = cov.new_zeros(b, t, self.n_params)
        g[..., TRANSL:TRANSL + 3] = cov.sum(2)
        # rotation: sum_l (−skew(a_l) J_l)ᵀ cov_l = J_lᵀ sum_l a_l × cov_l
        m = _cross(ev.a, cov).sum(2)  # [B,T,3]
        g[..., ROT:ROT + 3] = (ev.jg.transpose(-1, -2) @ m[..., None])[..., 0]
        h = cov @ ev.rg  # head-frame covectors R_gᵀ cov  [B,T,L,3]
        g[..., EXPR:] = self._coef_pullback(ev, h, shape=False)
        for j, s, e in self._segments():
            if e > s:
                m = _cross(ev.pair_b[..., s:e, :], h[..., s:e, :]).sum(2)
                g[..., JAW + 3 * j:JAW + 3 * j + 3] = (ev.jac_leaf[..., j, :, :].transpose(-1, -2) @ m[..., None])[..., 0]
        if self.has_posedirs:
            dpf = self._posedirs_jac(ev)
            sp = torch.einsum("btlc,lcp->btp", h, self.posedirs)
            nq = self.n_pairs
            if nq:
                hr = torch.cat([h[..., s:e, :] @ (ev.rot_leaf[..., j, :, :] - torch.eye(3, dtype=h.dtype, device=h.device)) for j, s, e in self._segments() if e > s], dim=2)
                sp = sp + torch.einsum("btqc,qcp->btp", hr, self.pair_posedirs)
            g[..., JAW:EXPR] += (sp[..., None] * dpf).sum(-2)
        return g

    def shape_pullback(self, ev: Eval, cov: Tensor) -> Tensor:
        """``Σ_{t,l} (∂X/∂β)ᵀ cov`` ``[B, S]``."""
        return self._coef_pullback(ev, cov @ ev.rg, shape=True).sum(1)

    def _coef_pullback(self, ev: Eval, h: Tensor, *, shape: bool) -> Tensor:
        a, c = (self.shape_a, self.shape_c) if shape else (self.expr_a, self.expr_c)
        b, t, nl = h.shape[:3]
        # g[b,t,k] = sum_{l,c} h[b,t,l,c] A[l,c,k] + sum_{q,c} (R_jᵀ h)[b,t,q,c] C[q,c,k]
        g = h.reshape(b, t, nl * 3) @ a.reshape(nl * 3, -1)
        nq = self.n_pairs
        if nq:
            hr = torch.cat([h[..., s:e, :] @ ev.rot_leaf[..., j, :, :] for j, s, e in self._segments() if e > s], dim=2)
            g = g + hr.reshape(b, t, nq * 3) @ c.reshape(nq * 3, -1)
        return g


def _buffer(buf: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A tensor of ``shape`` over the start of ``buf`` (or a new one when it is missing/too small)."""
    n = 1
    for d in shape:
        n *= d
    if buf is None or buf.numel() < n or buf.dtype != like.dtype or buf.device != like.device:
        return like.new_empty(shape)
    return buf.view(-1)[:n].view(shape)


def _shares_storage(a: Tensor, b: Tensor) -> bool:
    return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr()
