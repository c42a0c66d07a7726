"""A FLAME-format model restricted to its landmarks, with exact analytic Jacobians.

The fitter never needs the 5023 vertices: only the few hundred under the landmark embedding. This
module precomputes, once per model, every array the landmark forward pass touches (template, shape,
expression and pose-corrective bases of those vertices; the joint regressor folded into per-joint
bases) and evaluates landmarks in pixels together with their derivatives with respect to the
per-frame parameters and the identity shape, in closed form.

Kinematics: FLAME's tree [global, neck, jaw, eye_left, eye_right] with parents [-1, 0, 1, 1, 1]. The
neck is held at zero: for facial landmarks a neck rotation is indistinguishable from a global
rotation plus a translation (every landmark moves rigidly with the head), so it is a gauge freedom,
not an observable; all head rotation goes into ``global``. With the global and neck rotations at
identity, a vertex posed by the three leaf joints (jaw, eyes) is

    q = v + Σ_j w_j (R_j − I)(v − J_j),   v = template + S·β + E·ψ + P·vec(R_leaf − I)

and the global rotation about the root joint J_0 plus the translation put it in the camera frame:
x = R_g (q − J_0) + J_0 + t. That is exactly FLAME's linear blend skinning for this pose (verified
against :class:`flameqa.flame.FlameLayer` in the tests).

Per-frame parameter vector (P = 15 + E), in this order: global rotation (3, axis-angle), translation
(3), jaw (3), eye_left (3), eye_right (3), expression (E). Shape letters: B tracks/chunks, T frames,
L landmarks, U model vertices under the landmarks, S shape and E expression coefficients.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import torch
from torch import Tensor

from flameqa.fit.camera import project_with_jacobian

#: Offsets of the parameter blocks inside the per-frame vector.
ROT, TRANSL, JAW, EYE_L, EYE_R, EXPR = 0, 3, 6, 9, 12, 15
N_RIGID = 6
N_POSE = 15
FLAME_PARENTS = (-1, 0, 1, 1, 1)
LEAF_JOINTS = (2, 3, 4)


def rodrigues(rotvec: Tensor) -> Tensor:
    """Axis-angle ``[..., 3]`` → rotation matrices ``[..., 3, 3]`` (exact at zero)."""
    from flameqa.flame.lbs import axis_angle_to_matrix

    return axis_angle_to_matrix(rotvec)


def rodrigues_with_jacobian(rotvec: Tensor) -> tuple[Tensor, Tensor]:
    """Rotation matrices and their derivatives.

    Args:
        rotvec: ``[..., 3]`` axis-angle.

    Returns:
        R ``[..., 3, 3]`` and dR ``[..., 3, 3, 3]`` with ``dR[..., a, b, i] = ∂R[a, b] / ∂rotvec[i]``.
    """
    flat = rotvec.reshape(-1, 3)
    jac = torch.func.vmap(torch.func.jacfwd(rodrigues))(flat)  # [N,3,3,3]
    return rodrigues(rotvec), jac.reshape(*rotvec.shape[:-1], 3, 3, 3)


@dataclass
class LandmarkModel:
    """Landmark-restricted model arrays (all on one device, one float dtype).

    Attributes:
        template: ``[U, 3]`` rest vertices under the landmarks.
        shapedirs: ``[U, 3, S]``; exprdirs: ``[U, 3, E]``; posedirs: ``[U, 3, 27]`` (jaw, eye_left,
            eye_right blocks of 9, row-major R − I).
        weights: ``[U, 3]`` skinning weights of the leaf joints (jaw, eye_left, eye_right).
        j_template: ``[5, 3]``; j_shapedirs: ``[5, 3, S]``; j_exprdirs: ``[5, 3, E]``: joint locations
            as linear functions of shape and expression.
        corner: ``[L, C]`` rows of the U vertices for each landmark; bary: ``[L, C]`` their weights.
        normals: ``[L, 3]`` unit normals of the template surface at the landmarks.
        mp_indices: ``[L]`` MediaPipe index (0..477) of each landmark.
    """

    template: Tensor
    shapedirs: Tensor
    exprdirs: Tensor
    posedirs: Tensor
    weights: Tensor
    j_template: Tensor
    j_shapedirs: Tensor
    j_exprdirs: Tensor
    corner: Tensor
    bary: Tensor
    normals: Tensor
    mp_indices: Tensor
    leaf_rows: Tensor
    """``[La]`` landmarks moved by a leaf joint (jaw or eyes)."""
    lmk_shapedirs: Tensor
    """``[L, 3, S]`` shape basis at the landmarks minus the root joint's (``D_l − D_J0``)."""
    lmk_exprdirs: Tensor
    """``[L, 3, E]`` likewise for expression."""
    leaf_shape: Tensor
    """``[La, 3, 3, S]``: ``C[a, j] = Σ_corners bary · w_j · (D_u − D_Jj)`` for the shape basis."""
    leaf_expr: Tensor
    """``[La, 3, 3, E]`` likewise for expression."""
    model_id: str = ""

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
        return int(self.corner.shape[0])

    @property
    def device(self) -> torch.device:
        return self.template.device

    @property
    def dtype(self) -> torch.dtype:
        return self.template.dtype

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None) -> LandmarkModel:
        kw = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, Tensor):
                v = v.to(device=device, dtype=dtype if v.is_floating_point() else None)
            kw[f.name] = v
        return LandmarkModel(**kw)

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
        """Restrict full model arrays (``[V, ...]``, FLAME layout) to the vertices under the landmarks.

        ``shapedirs [V, 3, S]`` and ``exprdirs [V, 3, E]`` are the already truncated bases;
        ``posedirs [V, 3, 36]``; ``j_regressor [5, V]``; ``weights [V, 5]``; ``faces [F, 3]``;
        ``lmk_faces_idx [L]``, ``lmk_bary [L, 3]``.
        """

        def t64(a: np.ndarray | Tensor) -> Tensor:
            return torch.as_tensor(np.asarray(a.detach().cpu() if isinstance(a, Tensor) else a), dtype=torch.float64)

        if tuple(int(p) for p in parents) != FLAME_PARENTS:
            raise ValueError(f"the fitter needs FLAME's kinematic tree (parents {FLAME_PARENTS}), got {tuple(parents)}")
        v = t64(v_template)
        sd, ed, pd = t64(shapedirs), t64(exprdirs), t64(posedirs)
        jr, w = t64(j_regressor), t64(weights)
        f = torch.as_tensor(np.asarray(faces.cpu() if isinstance(faces, Tensor) else faces), dtype=torch.long)
        lf = torch.as_tensor(np.asarray(lmk_faces_idx.cpu() if isinstance(lmk_faces_idx, Tensor) else lmk_faces_idx), dtype=torch.long)
        lb = t64(lmk_bary)
        tri = f[lf]  # [L,3] vertex ids of each landmark's triangle
        # keep only corners with weight (one-hot embeddings, like the demo head's, become 1 corner)
        keep = (lb.abs() > 1e-8).any(0) if lb.shape[0] else torch.zeros(3, dtype=torch.bool)
        if bool((lb.abs() > 1e-8).sum(1).max() <= 1):
            order = lb.abs().argmax(1)
            tri = tri.gather(1, order[:, None])
            lb = lb.gather(1, order[:, None])
        elif not bool(keep.all()):
            tri, lb = tri[:, keep], lb[:, keep]
        uniq, inv = torch.unique(tri.reshape(-1), return_inverse=True)
        corner = inv.reshape(tri.shape)
        # joints as linear functions of the coefficients
        # j_template[j, c] = sum_v jr[j, v] * v[v, c]
        j_t = torch.einsum("jv,vc->jc", jr, v)
        # j_shapedirs[j, c, s] = sum_v jr[j, v] * sd[v, c, s]
        j_s = torch.einsum("jv,vcs->jcs", jr, sd)
        j_e = torch.einsum("jv,vce->jce", jr, ed)
        # template vertex normals (area-weighted face normals), interpolated at the landmarks
        fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=-1)
        vn = torch.zeros_like(v)
        for k in range(3):
            vn.index_add_(0, f[:, k], fn)
        vn = vn / vn.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        n_l = torch.einsum("lk,lkc->lc", lb, vn[uniq][corner])
        n_l = n_l / n_l.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        w_leaf = w[uniq][:, list(LEAF_JOINTS)]

        def at_landmarks(a: Tensor) -> Tensor:  # [U, ...] → [L, ...]
            # out[l, ...] = sum_n bary[l, n] a[corner[l, n], ...]
            return torch.einsum("ln,ln...->l...", lb, a[corner])

        wl = at_landmarks(w_leaf)
        rows = torch.nonzero(wl.abs().sum(1) > 0).squeeze(1)
        jl = list(LEAF_JOINTS)

        def leaf_basis(dirs_u: Tensor, jdirs: Tensor) -> Tensor:
            cr, br, wu = corner[rows], lb[rows], w_leaf[corner[rows]]  # [La,C], [La,C], [La,C,3j]
            # C[a, j, c, k] = sum_n bary[a, n] w[a, n, j] (dirs[a, n, c, k] − jdirs[j, c, k])
            return torch.einsum("an,anj,anck->ajck", br, wu, dirs_u[cr]) - torch.einsum("an,anj,jck->ajck", br, wu, jdirs[jl])

        out = cls(
            template=v[uniq],
            shapedirs=sd[uniq],
            exprdirs=ed[uniq],
            posedirs=pd[uniq][:, :, 9:36],  # drop the neck block: the neck stays at zero
            weights=w[uniq][:, list(LEAF_JOINTS)],
            j_template=j_t,
            j_shapedirs=j_s,
            j_exprdirs=j_e,
            corner=corner,
            bary=lb,
            normals=n_l,
            mp_indices=torch.as_tensor(np.asarray(mp_indices.cpu() if isinstance(mp_indices, Tensor) else mp_indices), dtype=torch.long),
            leaf_rows=rows,
            lmk_shapedirs=at_landmarks(sd[uniq]) - j_s[0],
            lmk_exprdirs=at_landmarks(ed[uniq]) - j_e[0],
            leaf_shape=leaf_basis(sd[uniq], j_s),
            leaf_expr=leaf_basis(ed[uniq], j_e),
            model_id=model_id,
        )
        return out.to(dtype=dtype)

    @classmethod
    def from_layer(cls, layer: torch.nn.Module, dtype: torch.dtype = torch.float32) -> LandmarkModel:
        """Build from a :class:`flameqa.flame.FlameLayer` (its buffers hold the truncated bases)."""
        n_shape = int(layer.n_shape)
        get = _buffer_getter(layer)
        sd_all = get("shapedirs")
        exprdirs = get("exprdirs", None)
        if exprdirs is None:  # one concatenated [V, 3, S + E] basis
            shapedirs, exprdirs = sd_all[..., :n_shape], sd_all[..., n_shape:]
        else:
            shapedirs = sd_all
        return cls.from_arrays(
            v_template=get("v_template"),
            shapedirs=shapedirs,
            exprdirs=exprdirs,
            posedirs=get("posedirs"),
            j_regressor=get("j_regressor", None) if get("j_regressor", None) is not None else get("J_regressor"),
            weights=get("weights", None) if get("weights", None) is not None else get("lbs_weights"),
            parents=tuple(int(p) for p in torch.as_tensor(layer.parents).tolist()),
            faces=layer.faces,
            lmk_faces_idx=layer.lmk_faces_idx,
            lmk_bary=layer.lmk_bary,
            mp_indices=layer.mp_indices,
            model_id=str(getattr(layer, "model_id", "")),
            dtype=dtype,
        )

    # ------------------------------------------------------------------------------------------
    # evaluation
    # ------------------------------------------------------------------------------------------

    def joints(self, beta: Tensor, expr: Tensor) -> Tensor:
        """Rest joints ``[B, T, 5, 3]`` from shape ``[B, S]`` and expression ``[B, T, E]``."""
        # j[b, t, j, c] = jt[j, c] + sum_s js[j, c, s] β[b, s] + sum_e je[j, c, e] ψ[b, t, e]
        js = torch.einsum("jcs,bs->bjc", self.j_shapedirs, beta)
        je = torch.einsum("jce,bte->btjc", self.j_exprdirs, expr)
        return self.j_template + js[:, None] + je

    def head_points(self, beta: Tensor, x: Tensor, *, with_jacobian: bool = False) -> dict[str, Tensor]:
        """Landmarks in the head frame (global rotation and translation not applied).

        Args:
            beta: ``[B, S]``; x: ``[B, T, P]`` per-frame parameters.

        Returns a dict with ``q [B, T, L, 3]`` (posed by jaw/eyes), ``joints [B, T, 5, 3]``, and with
        ``with_jacobian``: ``rot_leaf [B, T, 3, 3, 3]`` (R_j per leaf joint) and ``dq_leaf
        [B, T, L, 3, 9]`` (∂q/∂(jaw, eye_left, eye_right)).
        """
        expr = x[..., EXPR:]
        # shaped vertices v[b, t, u, c] = template + sum_s sd[u, c, s] β[b, s] + sum_e ed[u, c, e] ψ[b, t, e]
        vs = self.template + torch.einsum("ucs,bs->buc", self.shapedirs, beta)[:, None]
        vs = vs + torch.einsum("uce,bte->btuc", self.exprdirs, expr)
        joints = self.joints(beta, expr)
        leaf = x[..., JAW:EXPR].reshape(*x.shape[:-1], 3, 3)  # [B,T,3 joints,3]
        if with_jacobian:
            rot, drot = rodrigues_with_jacobian(leaf)  # [B,T,3,3,3], [B,T,3,3,3,3]
        else:
            rot, drot = rodrigues(leaf), None
        eye = torch.eye(3, dtype=x.dtype, device=x.device)
        rm = rot - eye  # [B,T,3j,3,3]
        # pose correctives vp[b,t,u,c] = vs + sum_p posedirs[u, c, p] (R − I)[b, t, p]
        vp = vs + torch.einsum("ucp,btp->btuc", self.posedirs, rm.reshape(*rm.shape[:-3], 27))
        d = vp[..., :, None, :] - joints[..., None, list(LEAF_JOINTS), :]  # [B,T,U,3j,3] v − J_j
        # q[b,t,u,c] = vp + sum_j w[u, j] sum_d (R_j − I)[c, d] (v − J_j)[d]
        q = vp + torch.einsum("uj,btjcd,btujd->btuc", self.weights, rm, d)
        out = {"q": self._combine(q), "joints": joints}
        if with_jacobian:
            # blend of leaf rotations M_u = I + sum_j w[u, j] (R_j − I)
            m = eye + torch.einsum("uj,btjcd->btucd", self.weights, rm)  # [B,T,U,3,3]
            # posedirs part: dvp[b,t,u,c,j,i] = sum_p posedirs[u, c, 9j + p] dR_j[p, i]
            pdir = self.posedirs.reshape(*self.posedirs.shape[:2], 3, 9)  # [U,3,3j,9]
            dvp = torch.einsum("ucjp,btjpi->btucji", pdir, drot.reshape(*drot.shape[:-4], 3, 9, 3))
            dq = torch.einsum("btucd,btudji->btucji", m, dvp)
            # skinning part: w[u, j] dR_j[c, d, i] (v − J_j)[d]
            dq = dq + torch.einsum("uj,btjcdi,btujd->btucji", self.weights, drot, d)
            out["dq_leaf"] = self._combine(dq.reshape(*dq.shape[:-2], 9))
            out["rot_leaf"] = rot
        return out

    def _combine(self, per_vertex: Tensor) -> Tensor:
        """Per-vertex ``[B, T, U, ...]`` → per-landmark ``[B, T, L, ...]`` with the barycentrics."""
        if self.corner.shape[1] == 1:
            return per_vertex[:, :, self.corner[:, 0]]
        g = per_vertex[:, :, self.corner]  # [B,T,L,C,...]
        w = self.bary.reshape(*self.bary.shape, *([1] * (g.dim() - 4)))
        return (g * w).sum(3)

    def camera_points(self, beta: Tensor, x: Tensor) -> tuple[Tensor, Tensor]:
        """Landmarks ``[B, T, L, 3]`` in the camera frame, and the rest joints ``[B, T, 5, 3]``."""
        h = self.head_points(beta, x)
        rg = rodrigues(x[..., ROT:ROT + 3])  # [B,T,3,3]
        j0 = h["joints"][..., 0, :]
        y = h["q"] - j0[..., None, :]
        # X[b,t,l,c] = sum_d Rg[b,t,c,d] y[b,t,l,d] + J0 + t
        pts = torch.einsum("btcd,btld->btlc", rg, y) + (j0 + x[..., TRANSL:TRANSL + 3])[..., None, :]
        return pts, h["joints"]

    def project(self, beta: Tensor, x: Tensor, intr: Tensor) -> Tensor:
        """Pixels ``[B, T, L, 2]``; ``intr [B, 3]`` (focal, cx, cy) per track."""
        from flameqa.fit.camera import project

        pts, _ = self.camera_points(beta, x)
        return project(pts, intr[:, None, None, :])

    def linearize(self, beta: Tensor, x: Tensor, intr: Tensor, *, shape_jacobian: bool = False) -> dict[str, Tensor]:
        """Pixels and their exact Jacobians.

        Args:
            beta: ``[B, S]``; x: ``[B, T, P]``; intr: ``[B, 3]``.
            shape_jacobian: also return ``d(uv)/dβ``.

        Returns:
            ``uv [B, T, L, 2]``, ``jx [B, T, L, 2, P]`` (per-frame parameters), ``pts [B, T, L, 3]``
            (camera frame) and, with ``shape_jacobian``, ``jb [B, T, L, 2, S]``.
        """
        h = self.head_points(beta, x, with_jacobian=True)
        rg, drg = rodrigues_with_jacobian(x[..., ROT:ROT + 3])  # [B,T,3,3], [B,T,3,3,3]
        j0 = h["joints"][..., 0, :]
        y = h["q"] - j0[..., None, :]  # [B,T,L,3]
        pts = torch.einsum("btcd,btld->btlc", rg, y) + (j0 + x[..., TRANSL:TRANSL + 3])[..., None, :]
        uv, dp = project_with_jacobian(pts, intr[:, None, None, :])  # [B,T,L,2], [B,T,L,2,3]
        # pixel derivative w.r.t. a head-frame displacement: Q = dP · R_g
        qm = torch.einsum("btlrc,btcd->btlrd", dp, rg)  # [B,T,L,2,3]
        # global rotation: d uv / d ω_i = dP · dR_g[:, :, i] · y
        j_rot = torch.einsum("btlrc,btcdi,btld->btlri", dp, drg, y)
        j_tr = dp
        j_leaf = torch.einsum("btlrc,btlck->btlrk", qm, h["dq_leaf"])  # [B,T,L,2,9]
        j_expr = self._coef_jacobian(qm, dp, h["rot_leaf"], shape=False)
        jx = torch.cat([j_rot, j_tr, j_leaf, j_expr], dim=-1)
        out = {"uv": uv, "jx": jx, "pts": pts}
        if shape_jacobian:
            out["jb"] = self._coef_jacobian(qm, dp, h["rot_leaf"], shape=True)
        return out

    def _coef_jacobian(self, qm: Tensor, dp: Tensor, rot_leaf: Tensor, *, shape: bool) -> Tensor:
        """d uv / d(coefficients) for the shape (``shape=True``) or the expression basis.

        x = R_g (q − J_0) + J_0 + t with q = v + Σ_j w_j (R_j − I)(v − J_j), v and J linear in the
        coefficients, so  d uv = Q (D_v − D_J0) + dP·D_J0 + Σ_j Q (R_j − I) C_j  where Q = dP·R_g and
        C_j = w_j (D_v − D_Jj) (precomputed per landmark). Args: qm, dp ``[B, T, L, 2, 3]``;
        rot_leaf ``[B, T, 3, 3, 3]``. Returns ``[B, T, L, 2, K]``.
        """
        dl, j0, c = (self.lmk_shapedirs, self.j_shapedirs[0], self.leaf_shape) if shape else (self.lmk_exprdirs, self.j_exprdirs[0], self.leaf_expr)
        # base[b,t,l,r,k] = sum_c Q[b,t,l,r,c] (D_l − D_J0)[l,c,k] + sum_c dP[b,t,l,r,c] D_J0[c,k]
        base = torch.einsum("btlrc,lck->btlrk", qm, dl) + torch.einsum("btlrc,ck->btlrk", dp, j0)
        rows = self.leaf_rows
        if rows.numel() == 0:
            return base
        eye = torch.eye(3, dtype=qm.dtype, device=qm.device)
        # qr[b,t,a,j,r,d] = sum_c Q[b,t,a,r,c] (R_j − I)[b,t,c,d]
        qr = torch.einsum("btarc,btjcd->btajrd", qm[:, :, rows], rot_leaf - eye)
        # corr[b,t,a,r,k] = sum_j sum_d qr[b,t,a,j,r,d] C[a,j,d,k]
        corr = torch.einsum("btajrd,ajdk->btark", qr, c)
        return base.index_add(2, rows, corr)


def _buffer_getter(layer: torch.nn.Module):
    """Look a model array up on a layer by name (buffers or attributes)."""
    missing = object()

    def get(name: str, default=missing):
        v = getattr(layer, name, None)
        if v is None:
            if default is missing:
                raise AttributeError(f"{type(layer).__name__} has no array {name!r} (needed by the fitter)")
            return default
        return v

    return get
