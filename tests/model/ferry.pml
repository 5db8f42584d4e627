/*
 * ferry's lease / epoch / fence / cursor / boundary / finalize protocol as a
 * Promela model, checked by spin (tests/model/check.sh; README "Model checking").
 *
 * Processes: one coordinator (crashes and restarts, reloading only what it
 * committed; a state commit may fail), NW worker processes (killed and
 * started again under a new id, or -- quick scenario 6, -DSAME_ID_RESTART --
 * under the same --id, registering again), an
 * adversarial network that loses and duplicates messages, and a final check
 * that runs once nothing can move any more. Every receiver takes ANY message
 * in flight for it, so messages are also delivered in any order (except one
 * worker's heartbeats, which one TCP connection keeps in order).
 *
 * Each step names the code it models; README "Model checking" has the map.
 *
 * Properties (assert; a failing one prints "assertion violated" and a trail):
 *   P1 a range is marked done (committed) once, and never leaves done;
 *   P2 no batch of an older epoch lands in the new store after a batch of a
 *      newer epoch of the same range did (i.e. after a newer grant's first
 *      write);
 *   P3 the version is bumped (committed) exactly once, in the commit whose
 *      ranges are all done, and the new store's marker only ever mirrors it;
 *   P4 the committed boundary is always the done prefix (cleared once the
 *      version is bumped), and the mirrored one never runs ahead of it;
 *   P5 an epoch is never issued twice: every new grant's epoch is above
 *      every epoch that ever left the coordinator in a grant (a grant sent
 *      again to the same worker for the same lease keeps its epoch), and a
 *      restarted coordinator's next epoch is above all of them;
 *   P6 a range committed done has every batch in the new store, and when
 *      nothing can move any more the migration is complete (all done, the
 *      version bumped once and mirrored);
 *   P7 no batch lands for a range once it is committed done (stronger than
 *      P2: what makes the version marker a safe gate for `ferryctl wait`);
 *   P8 a range committed done is sealed by the epoch that completed it:
 *      the new store's fence holds that epoch, so no older one can write.
 *
 * Mutants (spin -D...), each must produce a counterexample
 * (check.sh --mutants):
 *   BUGGY_FENCE         the new store records a batch's epoch without
 *                       checking it (the fence upsert without the check)
 *   BUGGY_EPOCH_RELOAD  a (re)started coordinator takes its next epoch from
 *                       the job row only, not also from the ranges' epochs
 *   BUGGY_REPLY_FIRST   replies leave before the state commit
 *   BUGGY_MIRROR_FIRST  the version marker is written to the new store
 *                       before the state commit that bumps the version
 * and the code before the fixes of f395ffc (README "Model checking", bugs A
 * and B), one fix undone at a time:
 *   BUG_KEEP_WAITING    a failed commit's Restore keeps the held requests (P7)
 *   BUG_NO_EMPTY_FENCE  the empty last read of a range writes no fence (P8)
 *   BUG_REGISTER_KEEPS_LEASES  Register of an id that holds a lease keeps it:
 *                       a process restarted under the same --id gets it
 *                       again with the same epoch (P7, with same_id)
 */

/* NR, NW and NSLOT are fixed: some guards below are written out for them. */
#define NR 2 /* ranges, in key order */
#define NW 2 /* worker processes */
#define NID 4 /* worker ids: process w runs as id w, and after a restart as id w + NW */
#define NSLOT 8 /* messages in flight at once (an assertion checks it is enough) */
#ifndef NB
#define NB 2 /* batches per range */
#endif
/* Fault budgets: how many of each fault one run may suffer (default 1 each,
 * all at once: tests/model/check.sh --full). With -DQUICK the run instead
 * explores, one after the other, the scenarios listed in init (each an
 * exhaustive check of its own budgets): the default ctest. */
#ifdef QUICK
#define CCRASH 0
#define WCRASH 0
#define LOSS 0
#define DUP 0
#define EXPIRE 0
#define EARLY 0
#endif
#ifndef CCRASH
#define CCRASH 1 /* coordinator crashes (or failed state commits) */
#endif
#ifndef WCRASH
#define WCRASH 1 /* worker crashes, over all workers */
#endif
#ifndef LOSS
#define LOSS 1 /* messages lost */
#endif
#ifndef DUP
#define DUP 1 /* messages duplicated */
#endif
#ifndef EXPIRE
#define EXPIRE 1 /* leases expired or revoked while their owner still works */
#endif
#ifndef EARLY
#define EARLY 1 /* worker requests that time out while their answer is on its way */
#endif
#define MAXE 16 /* epochs the ghost arrays can hold */

#define NONE 255
#define PENDING 0
#define LEASED 1
#define DONE 2
#define FULL ((1 << NB) - 1)

/* Message types; 0 = free slot. 1..4 and 9 go to the coordinator, 5..8 and 10
 * to a worker. */
#define REQ 1      /* LeaseRequest */
#define HB 2       /* Heartbeat(range, epoch, cursor) */
#define COMPLETE 3 /* Complete(range, epoch, cursor, next) */
#define RELEASE 4  /* Release(range, epoch, cursor) */
#define GRANT 5    /* Grant(range, epoch, cursor) */
#define NOWORK 6   /* NoWork(complete) */
#define LOST 7     /* Error LEASE_LOST(range, epoch) */
#define ACK 8      /* Ack */
#define REG 9      /* Register (a restarted process under the same --id) */
#define REGD 10    /* Registered */

/* A message packed in one int: typ 4 bits, worker 2, range 2, epoch 5, cursor 3,
 * request id 2, flag 1. The request id of a call and its answer is CURRENT
 * while it is the worker's latest call and becomes STALE when the worker
 * makes a new one (real request ids are unique 64-bit numbers: a late answer
 * never passes for the answer to a later call); heartbeats and releases are
 * not calls (STALE). Messages from a killed worker process become DEAD: the
 * coordinator's answers to them go nowhere. */
#define STALE 0
#define CURRENT 1
#define DEAD 2
#define MK(t, w, r, e, c, rid, f) \
  ((t) | ((w) << 4) | ((r) << 6) | ((e) << 8) | ((c) << 13) | ((rid) << 16) | ((f) << 18))
#define TYP(m) ((m) & 15)
#define MW(m) (((m) >> 4) & 3)
#define MR(m) (((m) >> 6) & 3)
#define ME(m) (((m) >> 8) & 31)
#define MC(m) (((m) >> 13) & 7)
#define MRID(m) (((m) >> 16) & 3)
#define MF(m) (((m) >> 18) & 1)
/* prints message m (for counterexamples: spin -t) */
inline pmsg(m) {
  if
  :: TYP(m) == REQ -> printf("LeaseRequest from w%d", MW(m))
  :: TYP(m) == HB -> printf("Heartbeat(range %d, epoch %d, cursor %d) from w%d", MR(m), ME(m), MC(m), MW(m))
  :: TYP(m) == COMPLETE -> printf("Complete(range %d, epoch %d, cursor %d, next) from w%d", MR(m), ME(m), MC(m), MW(m))
  :: TYP(m) == RELEASE -> printf("Release(range %d, epoch %d, cursor %d) from w%d", MR(m), ME(m), MC(m), MW(m))
  :: TYP(m) == GRANT -> printf("Grant(range %d, epoch %d, cursor %d) to w%d", MR(m), ME(m), MC(m), MW(m))
  :: TYP(m) == NOWORK -> printf("NoWork(complete=%d) to w%d", MF(m), MW(m))
  :: TYP(m) == LOST -> printf("LeaseLost(range %d, epoch %d) to w%d", MR(m), ME(m), MW(m))
  :: TYP(m) == REG -> printf("Register from w%d", MW(m))
  :: TYP(m) == REGD -> printf("Registered to w%d", MW(m))
  :: else -> printf("message %d", m)
  fi;
  if
  :: MRID(m) == CURRENT -> printf(" [answer to / of the latest call]\n")
  :: MRID(m) == DEAD -> printf(" [from a killed process]\n")
  :: else -> printf("\n")
  fi
}

#define TO_COORD(m) ((TYP(m) >= REQ && TYP(m) <= RELEASE) || TYP(m) == REG)
#define TO_WORKER(m, w) (TYP(m) >= GRANT && TYP(m) != REG && MW(m) == (w))

/* ---- the network: a multiset of messages, kept sorted (descending, free
 * slots last) so that two states with the same messages are one state. */
int net[NSLOT];
byte loss = LOSS;
byte dup = DUP;

byte si, sj;
int st;

/* called inside atomic / d_step only */
inline net_sort() {
  si = 0;
    do
    :: si < NSLOT - 1 ->
      sj = 0;
      do
      :: sj < NSLOT - 1 - si ->
        if
        :: net[sj] < net[sj + 1] -> st = net[sj]; net[sj] = net[sj + 1]; net[sj + 1] = st
        :: else -> skip
        fi;
        sj++
      :: else -> break
      od;
      si++
    :: else -> break
    od;
    si = 0; sj = 0; st = 0
}

/* Sends m (losing it is the adversary's move: LOSS). */
inline net_send(m) {
  assert(net[NSLOT - 1] == 0); /* the model's network is big enough */
  net[NSLOT - 1] = m;
  net_sort()
}

inline net_take(i) {
  net[i] = 0;
  net_sort()
}

/* ---- the coordinator's committed state (the state file) ---- */
byte p_st[NR];        /* ranges.state */
byte p_ep[NR];        /* ranges.epoch */
byte p_own[NR];       /* ranges.owner */
byte p_cur[NR];       /* ranges.cursor: batches copied */
byte p_last_epoch;    /* job.last_epoch */
bit p_complete;       /* job.phase == complete */
bit p_ver;            /* job.current_version == T */
byte p_bnd;           /* job.boundary: ranges in the done prefix */
bit p_mirrored;       /* job.mirrored */

/* ---- the coordinator's memory (LeaseService: table_, job_, workers_, waiting_;
 * CoordinatorServer::replies_) ---- */
byte m_st[NR];
byte m_ep[NR];
byte m_own[NR];
byte m_cur[NR];
byte m_last_epoch;     /* LeaseTable::last_epoch_ */
byte m_job_last_epoch; /* job_.last_epoch */
bit m_complete;
bit m_ver;
byte m_bnd;
bit m_mirrored;
byte m_current[NID];   /* WorkerInfo::current_range */
bit m_waiting[NID];    /* waiting_ holds this worker's lease request */
byte m_wait_rid[NID];
int rep[NID + 1];      /* replies_: sent after the commit */
byte nrep;
bit c_up;              /* the coordinator is serving (not stopped as "nothing to do") */
byte ccrash = CCRASH;
byte expire_budget = EXPIRE;

/* ---- the new store: rows, fences, version marker ---- */
byte t_fence[NR];      /* __ferry_meta fence/<plan>/<range> */
byte t_rows[NR];       /* bit b: batch b of the range is in the store */
bit t_ver;             /* __ferry_meta version == T */
byte t_bnd;            /* __ferry_meta boundary (mirror) */

/* ---- the workers ---- */
/* the lease each worker holds (copies or is completing): global so that the
 * coordinator's time-driven expiry can tell an abandoned lease */
byte w_lr[NID];
byte w_le[NID];
bit id_gone[NID];      /* no process runs as this id any more */
byte wcrash = WCRASH;
#ifdef SAME_ID_RESTART
bit same_id = 1;       /* a restarted worker keeps its --id (and registers again) */
#else
bit same_id = 0;
#endif
byte early = EARLY;

/* ---- ghosts, only for the properties ---- */
byte g_done[NR];       /* commits that marked the range done */
byte g_bumps;          /* commits that bumped the version */
byte g_maxep[NR];      /* highest epoch of a batch that landed */
byte g_max_sent;       /* highest epoch in a grant that left the coordinator */

/* n = ranges in the done prefix of the memory (prefix_m) or the state file (prefix_p) */
inline prefix_m(n) {
  n = 0;
  do
  :: n < NR && m_st[n] == DONE -> n++
  :: else -> break
  od
}
inline prefix_p(n) {
  n = 0;
  do
  :: n < NR && p_st[n] == DONE -> n++
  :: else -> break
  od
}

/* ================= coordinator ================= */

byte ci, cw, cr, cn;
int cm;
byte cx;   /* this pass: the lease that expires, NONE = none */
byte cwt;  /* this pass: bit w = worker w's held request ran out of time */
byte cfate; /* this pass: 0 commit + replies, 1 killed before the commit,
               2 the commit fails (ReloadAfterFailedCommit), 3 killed after the commit */

inline reply(m) {
  rep[nrep] = m;
  nrep++
}

/* LeaseService::Load / Restore: LeaseTable::Load (next epoch above job.last_epoch
 * and every range's epoch) + RebuildWorkerLeases */
inline load_state() {
  ci = 0;
  m_last_epoch = p_last_epoch;
  do
  :: ci < NR ->
    m_st[ci] = p_st[ci]; m_ep[ci] = p_ep[ci]; m_own[ci] = p_own[ci]; m_cur[ci] = p_cur[ci];
#ifndef BUGGY_EPOCH_RELOAD
    if
    :: m_ep[ci] > m_last_epoch -> m_last_epoch = m_ep[ci] /* never reuse a token */
    :: else -> skip
    fi;
#endif
    ci++
  :: else -> break
  od;
  m_job_last_epoch = p_last_epoch;
  m_complete = p_complete; m_ver = p_ver; m_bnd = p_bnd; m_mirrored = p_mirrored;
  ci = 0;
  do
  :: ci < NID -> m_current[ci] = NONE; ci++
  :: else -> break
  od;
  ci = 0;
  do
  :: ci < NR ->
    if
    :: m_st[ci] == LEASED -> m_current[m_own[ci]] = ci
    :: else -> skip
    fi;
    ci++
  :: else -> break
  od;
  nrep = 0;
  ci = 0;
  do
  :: ci <= NID -> rep[ci] = 0; ci++
  :: else -> break
  od;
  ci = 0
}

/* LeaseService::MaybeFinish */
inline maybe_finish() {
  if
  :: !m_complete ->
    m_job_last_epoch = m_last_epoch;
    prefix_m(cn);
    if
    :: cn == NR -> m_complete = 1; m_ver = 1; m_bnd = 0; m_mirrored = 0 /* finalize */
    :: else -> m_bnd = cn
    fi;
    cn = 0
  :: else -> skip
  fi
}

/* LeaseService::LeaseReply for worker cw; may_wait: a request that may be
 * held in waiting_ (not one AnswerWaiting answers). */
inline lease_reply(rid, may_wait) {
  prefix_m(cn);
  if
  :: !m_complete && cn == NR -> maybe_finish() /* this message completed the last range */
  :: else -> skip
  fi;
  if
  :: m_complete -> reply(MK(NOWORK, cw, 0, 0, 0, rid, 1))
  :: !m_complete && m_current[cw] != NONE && m_st[m_current[cw]] == LEASED &&
     m_own[m_current[cw]] == cw ->
    /* the worker lost our grant reply: the same lease again */
    cr = m_current[cw];
    reply(MK(GRANT, cw, cr, m_ep[cr], m_cur[cr], rid, 0))
  :: else ->
    /* LeaseTable::Grant: the first pending range in key order (with two
     * ranges also the first one of a table nobody copies) */
    cr = 0;
    do
    :: cr < NR && m_st[cr] != PENDING -> cr++
    :: else -> break
    od;
    if
    :: cr < NR ->
      m_st[cr] = LEASED; m_own[cr] = cw;
      m_last_epoch++; m_ep[cr] = m_last_epoch; /* a new, strictly increasing epoch */
      assert(m_last_epoch < MAXE);
      assert(m_last_epoch > g_max_sent); /* P5: never an epoch that was sent before */
      m_current[cw] = cr;
      reply(MK(GRANT, cw, cr, m_ep[cr], m_cur[cr], rid, 0))
    :: else ->
      cn = 0;
      ci = 0;
      do
      :: ci < NR ->
        if
        :: m_st[ci] == LEASED -> cn++
        :: else -> skip
        fi;
        ci++
      :: else -> break
      od;
      ci = 0;
      if
      :: may_wait && cn > 0 -> m_waiting[cw] = 1; m_wait_rid[cw] = rid /* held */
      :: else -> reply(MK(NOWORK, cw, 0, 0, 0, rid, 0))
      fi
    fi
  fi
}

/* LeaseTable::Owned: leased to this (epoch, worker) */
#define OWNED(r, e, w) (m_st[r] == LEASED && m_ep[r] == (e) && m_own[r] == (w))

/* CoordinatorServer::HandleFrame -> Route -> LeaseService::RequestLease /
 * Report / Register: one worker message */
inline handle(m) {
  cw = MW(m);
  cr = MR(m);
  printf("C   receives "); pmsg(m);
  if
  :: TYP(m) == REQ -> lease_reply(MRID(m), 1)
  :: TYP(m) == HB -> /* LeaseService::Report -> LeaseTable::Heartbeat */
    if
    :: OWNED(cr, ME(m), cw) ->
      if  /* ApplyProgress: a non-empty cursor that differs replaces it */
      :: MC(m) != 0 -> m_cur[cr] = MC(m)
      :: else -> skip
      fi
    :: else ->
      if
      :: m_current[cw] == cr -> m_current[cw] = NONE
      :: else -> skip
      fi;
      reply(MK(LOST, cw, cr, ME(m), 0, MRID(m), 0))
    fi
  :: TYP(m) == COMPLETE -> /* LeaseService::Report -> LeaseTable::Complete */
    if
    :: m_st[cr] == DONE && m_ep[cr] == ME(m) && m_own[cr] == cw -> cn = 0 /* a retry */
    :: else ->
      if
      :: OWNED(cr, ME(m), cw) -> m_cur[cr] = MC(m); m_st[cr] = DONE; cn = 0
      :: else -> cn = NONE
      fi
    fi;
    if
    :: m_current[cw] == cr -> m_current[cw] = NONE
    :: else -> skip
    fi;
    if
    :: cn == NONE -> reply(MK(LOST, cw, cr, ME(m), 0, MRID(m), 0))
    :: else -> lease_reply(MRID(m), 1) /* Complete.next: the next lease in the answer */
    fi
  :: TYP(m) == RELEASE -> /* LeaseService::Report -> LeaseTable::Release */
    if
    :: OWNED(cr, ME(m), cw) ->
      m_cur[cr] = MC(m); m_st[cr] = PENDING; m_own[cr] = NONE;
      if
      :: m_current[cw] == cr -> m_current[cw] = NONE
      :: else -> skip
      fi;
      skip /* its Ack goes to a call nobody waits for: not modelled */
    :: else -> reply(MK(LOST, cw, cr, ME(m), 0, MRID(m), 0))
    fi
  :: TYP(m) == REG -> /* LeaseService::Register */
#ifndef BUG_REGISTER_KEEPS_LEASES
    /* the leases the id still holds go back to pending (LeaseTable::Revoke):
     * the next grant takes a new epoch, which fences the old process; its
     * held request is dropped (waiting_.erase). current_range is left as it
     * is (LeaseReply's "same lease again" checks the range is leased to it). */
    if
    :: m_st[0] == LEASED && m_own[0] == cw ->
      printf("C   revokes range 0 (epoch %d): w%d registered again\n", m_ep[0], cw);
      m_st[0] = PENDING; m_own[0] = NONE
    :: else -> skip
    fi;
    if
    :: m_st[1] == LEASED && m_own[1] == cw ->
      printf("C   revokes range 1 (epoch %d): w%d registered again\n", m_ep[1], cw);
      m_st[1] = PENDING; m_own[1] = NONE
    :: else -> skip
    fi;
    m_waiting[cw] = 0;
#endif
    reply(MK(REGD, cw, 0, 0, 0, MRID(m), 0))
  fi;
  cn = 0; cr = 0; cw = 0
}

/* LeaseService::Tick -> LeaseTable::ExpireDue (or LeaseService::Revoke) of
 * lease cx (chosen by the pass). A lease expires when its deadline passes: at any time if its owner does not hold it
 * (ABANDONED: it lost the grant, or came back from a crash without it), and
 * EXPIRE times while the owner still works on it (a partition, a paused
 * process, a clock step, an operator's revoke). */
#define GRANT_SLOT(i, r) (TYP(net[i]) == GRANT && MR(net[i]) == (r) && ME(net[i]) == m_ep[r])
#define GRANT_IN_FLIGHT(r) \
  (GRANT_SLOT(0, r) || GRANT_SLOT(1, r) || GRANT_SLOT(2, r) || GRANT_SLOT(3, r) || \
   GRANT_SLOT(4, r) || GRANT_SLOT(5, r) || GRANT_SLOT(6, r) || GRANT_SLOT(7, r))
#define GRANT_IN_REPLIES(r) \
  ((TYP(rep[0]) == GRANT && MR(rep[0]) == (r)) || (TYP(rep[1]) == GRANT && MR(rep[1]) == (r)) || \
   (TYP(rep[2]) == GRANT && MR(rep[2]) == (r)) || (TYP(rep[3]) == GRANT && MR(rep[3]) == (r)) || \
   (TYP(rep[4]) == GRANT && MR(rep[4]) == (r)))
#define ABANDONED(r) \
  (!(w_lr[m_own[r]] == (r) && w_le[m_own[r]] == m_ep[r]) && !GRANT_IN_FLIGHT(r) && \
   !GRANT_IN_REPLIES(r))
inline expire() {
  if
  :: cx != NONE && m_st[cx] == LEASED && (ABANDONED(cx) || expire_budget > 0) ->
    printf("C   expires range %d (epoch %d of w%d)\n", cx, m_ep[cx], m_own[cx]);
    if
    :: ABANDONED(cx) -> skip
    :: else -> expire_budget--
    fi;
    if
    :: m_current[m_own[cx]] == cx -> m_current[m_own[cx]] = NONE
    :: else -> skip
    fi;
    m_st[cx] = PENDING; m_own[cx] = NONE
  :: else -> skip
  fi
}

/* LeaseService::AnswerWaiting: a held request is answered once a range is
 * pending or the migration is over, or when its wait (1 s) ran out (cwt). */
inline serve_waiting() {
  cw = 0;
  do
  :: cw < NID ->
    if
    :: m_waiting[cw] ->
      cn = 0;
      ci = 0;
      do
      :: ci < NR ->
        if
        :: m_st[ci] == PENDING -> cn++
        :: else -> skip
        fi;
        ci++
      :: else -> break
      od;
      ci = 0;
      if
      :: m_complete || cn > 0 || (cwt & (1 << cw)) ->
        m_waiting[cw] = 0; lease_reply(m_wait_rid[cw], 0)
      :: else -> skip
      fi
    :: else -> skip
    fi;
    cw++
  :: else -> break
  od;
  cw = 0; cn = 0
}

/* CoordinatorServer::CommitAndReply: LeaseService::TakeCommit ->
 * StateStore::Commit of everything that changed, in ONE transaction */
inline commit() {
  printf("C   commits: range 0 %d/e%d/c%d, range 1 %d/e%d/c%d (0 pending 1 leased 2 done), version bumped %d\n",
         m_st[0], m_ep[0], m_cur[0], m_st[1], m_ep[1], m_cur[1], m_ver);
  ci = 0;
  do
  :: ci < NR ->
    assert(!(p_st[ci] == DONE && m_st[ci] != DONE)); /* P1 */
    if
    :: m_st[ci] == DONE && p_st[ci] != DONE ->
      g_done[ci]++;
      assert(g_done[ci] == 1);   /* P1 */
      assert(t_rows[ci] == FULL); /* P6 */
      assert(t_fence[ci] >= m_ep[ci]) /* P8 */
    :: else -> skip
    fi;
    p_st[ci] = m_st[ci]; p_ep[ci] = m_ep[ci]; p_own[ci] = m_own[ci]; p_cur[ci] = m_cur[ci];
    ci++
  :: else -> break
  od;
  ci = 0;
  if
  :: m_ver && !p_ver -> g_bumps++
  :: else -> skip
  fi;
  p_last_epoch = m_job_last_epoch;
  p_complete = m_complete; p_ver = m_ver; p_bnd = m_bnd; p_mirrored = m_mirrored;
  prefix_p(cn);
  assert(g_bumps <= 1);                         /* P3 */
  assert(!p_ver || cn == NR);                   /* P3: only when every range is done */
  assert(p_complete == p_ver);
  assert(p_complete -> p_bnd == 0 : p_bnd == cn); /* P4 */
  cn = 0
}

/* the replies leave (CommitAndReply: router_->send, after the commit) */
inline send_replies() {
  ci = 0;
  do
  :: ci < nrep ->
    cm = rep[ci];
    printf("C   sends "); pmsg(cm);
    if
    :: TYP(cm) == GRANT && ME(cm) > g_max_sent -> g_max_sent = ME(cm)
    :: else -> skip
    fi;
    if
    :: MRID(cm) == DEAD || id_gone[MW(cm)] -> skip /* to a process that is gone: ROUTER drops it */
    :: TYP(cm) == LOST && (net[0] == cm || net[1] == cm || net[2] == cm || net[3] == cm || net[4] == cm || net[5] == cm || net[6] == cm || net[7] == cm) ->
      skip /* the same "lease lost" is already on its way: a second one changes nothing */
    :: else -> net_send(cm) /* dropped at the high-water mark if the network is full */
    fi;
    rep[ci] = 0;
    ci++
  :: else -> break
  od;
  nrep = 0; ci = 0; cm = 0
}

/* MarkerMirror::Update -> Store::WriteMarker, then LeaseService::MarkMirrored:
 * the committed boundary / version to the new store */
inline mirror() {
  if
  :: m_complete && !m_mirrored ->
    assert(p_ver);  /* P3: the marker mirrors a committed bump */
    t_ver = 1; t_bnd = 0; m_mirrored = 1 /* recorded in the state file by the next commit */
  :: !m_complete && t_bnd != m_bnd ->
    prefix_p(cn);
    assert(m_bnd <= cn);  /* P4 */
    t_bnd = m_bnd; cn = 0
  :: else -> skip
  fi
}

/* what a pass without a worker message would do */
#ifndef NO_WAIT_TIMEOUTS
#define WAITING_IDLE m_waiting[0] || m_waiting[1] || m_waiting[2] || m_waiting[3] ||
#else
#define WAITING_IDLE
#endif
#define IDLE_WORK \
  (WAITING_IDLE (m_complete && m_mirrored != p_mirrored) || \
   (m_complete && !m_mirrored) || (!m_complete && t_bnd != m_bnd) || \
   (m_st[0] == LEASED && (expire_budget > 0 || ABANDONED(0))) || \
   (m_st[1] == LEASED && (expire_budget > 0 || ABANDONED(1))))

#define FOR_COORD(i) (TO_COORD(net[i]))

proctype Coordinator() {
restart:
  atomic {
    load_state();
    printf("C   (re)starts from the state file: last epoch %d\n", m_last_epoch);
    m_waiting[0] = 0; m_waiting[1] = 0; m_waiting[2] = 0; m_waiting[3] = 0;
    /* P5: a restarted coordinator's next epoch is above every epoch sent */
    assert(m_last_epoch >= g_max_sent);
    if
    :: t_ver -> c_up = 0; goto stopped /* "already at version T; nothing to do" */
    :: else -> c_up = 1
    fi
  };
end_serve:
  do
  :: atomic {
      /* CoordinatorServer::Step: what wakes the pass: one worker message (any of
       * those in flight: reordering), or time-driven work */
      if
      :: FOR_COORD(0) -> cm = net[0]; d_step { net_take(0) }
      :: FOR_COORD(1) -> cm = net[1]; d_step { net_take(1) }
      :: FOR_COORD(2) -> cm = net[2]; d_step { net_take(2) }
      :: FOR_COORD(3) -> cm = net[3]; d_step { net_take(3) }
      :: FOR_COORD(4) -> cm = net[4]; d_step { net_take(4) }
      :: FOR_COORD(5) -> cm = net[5]; d_step { net_take(5) }
      :: FOR_COORD(6) -> cm = net[6]; d_step { net_take(6) }
      :: FOR_COORD(7) -> cm = net[7]; d_step { net_take(7) }
      :: IDLE_WORK -> cm = 0
      fi;
      /* the pass's nondeterministic choices */
      if
      :: m_st[0] == LEASED && (expire_budget > 0 || ABANDONED(0)) -> cx = 0
      :: m_st[1] == LEASED && (expire_budget > 0 || ABANDONED(1)) -> cx = 1
      :: true -> cx = NONE
      fi;
      cwt = 0;
#ifndef NO_WAIT_TIMEOUTS
      if
      :: m_waiting[0] -> cwt = 1
      :: true -> skip
      fi;
      if
      :: m_waiting[1] -> cwt = cwt | 2
      :: true -> skip
      fi;
      if
      :: m_waiting[2] -> cwt = cwt | 4
      :: true -> skip
      fi;
      if
      :: m_waiting[3] -> cwt = cwt | 8
      :: true -> skip
      fi;
#endif
      if
      :: ccrash > 0 -> ccrash--; cfate = 3
#ifndef NO_CRASH_BEFORE_COMMIT
      :: ccrash > 0 -> ccrash--; cfate = 1
#endif
#ifndef NO_COMMIT_FAILURE
      :: ccrash > 0 -> ccrash--; cfate = 2
#endif
      :: true -> cfate = 0
      fi;
      d_step {
        if
        :: cm != 0 -> handle(cm)
        :: else -> skip
        fi;
        expire();
        maybe_finish();
        serve_waiting();
#ifdef BUGGY_REPLY_FIRST
        send_replies();
#endif
#ifdef BUGGY_MIRROR_FIRST
        mirror();
#endif
        if
        :: cfate == 2 ->
          /* ReloadAfterFailedCommit -> LeaseService::Restore: memory back
           * to the state file, replies dropped, and the held requests
           * dropped too (waiting_.clear(): their workers time out and ask
           * again). BUG_KEEP_WAITING: the code before f395ffc kept them. */
#ifdef BUG_KEEP_WAITING
          printf("C   state commit FAILS: memory reloaded from the state file, replies dropped, held requests KEPT\n");
          cw = m_waiting[0] + 2 * m_waiting[1] + 4 * m_waiting[2] + 8 * m_waiting[3];
#else
          printf("C   state commit FAILS: memory reloaded from the state file, replies and held requests dropped\n");
          cw = 0;
#endif
          load_state();
          m_waiting[0] = cw & 1; m_waiting[1] = (cw >> 1) & 1;
          m_waiting[2] = (cw >> 2) & 1; m_waiting[3] = (cw >> 3) & 1; cw = 0;
          mirror()
        :: cfate == 0 || cfate == 3 -> commit()
        :: else -> printf("C   is killed before its commit\n")
        fi;
        if
        :: cfate == 3 -> printf("C   is killed after its commit, before sending the replies\n")
        :: else -> skip
        fi;
        if
        :: cfate == 0 -> send_replies(); mirror()
        :: else -> skip
        fi;
        cm = 0; cx = 0; cwt = 0
      };
      if
      :: cfate == 1 || cfate == 3 -> cfate = 0; goto restart
      :: else -> cfate = 0
      fi
    }
  od;
stopped:
end_stopped:
  /* a coordinator that found nothing to do exited: messages to it vanish */
  do
  :: atomic { FOR_COORD(0) -> net_take(0) }
  :: atomic { FOR_COORD(1) -> net_take(1) }
  :: atomic { FOR_COORD(2) -> net_take(2) }
  :: atomic { FOR_COORD(3) -> net_take(3) }
  :: atomic { FOR_COORD(4) -> net_take(4) }
  :: atomic { FOR_COORD(5) -> net_take(5) }
  :: atomic { FOR_COORD(6) -> net_take(6) }
  :: atomic { FOR_COORD(7) -> net_take(7) }
  od
}

/* ================= workers ================= */

/* nothing in flight for or from w, the request not held: the answer was
 * lost, the call times out */
#define NOT_W(i, w) (net[i] == 0 || MW(net[i]) != (w))
#define QUIET(w) \
  (NOT_W(0, w) && NOT_W(1, w) && NOT_W(2, w) && NOT_W(3, w) && NOT_W(4, w) && NOT_W(5, w) && \
   NOT_W(6, w) && NOT_W(7, w) && \
   !m_waiting[w])

#define FOR_ME(i) TO_WORKER(net[i], w)
#define lr w_lr[w]
#define le w_le[w]

/* request id r of w's messages in slot i becomes n */
inline age(i, r, n) {
  if
  :: net[i] != 0 && MW(net[i]) == w && MRID(net[i]) == (r) ->
    net[i] = net[i] - ((r) << 16) + ((n) << 16)
  :: else -> skip
  fi
}

/* a new call: the answers to earlier calls become stale */
inline new_call() {
  age(0, CURRENT, STALE); age(1, CURRENT, STALE); age(2, CURRENT, STALE);
  age(3, CURRENT, STALE); age(4, CURRENT, STALE); age(5, CURRENT, STALE);
  age(6, CURRENT, STALE); age(7, CURRENT, STALE);
  net_sort();
  if
  :: m_wait_rid[w] == CURRENT -> m_wait_rid[w] = STALE
  :: else -> skip
  fi
}

/* Worker::Run: a LeaseRequest */
inline ask() {
  printf("w%d  asks for a lease\n", w);
  lr = NONE; le = 0; lc = 0;
  calling_complete = 0;
  registering = 0;
  new_call();
  net_send(MK(REQ, w, 0, 0, 0, CURRENT, 0))
}

/* Worker::Register, by a restarted process under the same --id (the
 * registration of a new id changes nothing the model holds: not modelled) */
inline register_again() {
  printf("w%d  registers\n", w);
  lr = NONE; le = 0; lc = 0;
  calling_complete = 0;
  registering = 1;
  new_call();
  net_send(MK(REG, w, 0, 0, 0, CURRENT, 0))
}

/* a worker process killed and started again: a new socket, so nothing in
 * flight to the old one reaches it, and the coordinator's answers to what
 * the old one sent go nowhere. It registers under a new id (the default id
 * is host-pid-random) or, with same_id (-DSAME_ID_RESTART, quick scenario
 * 6), under the same --id, and Register then revokes the id's leases. */
#define CAN_RESTART (wcrash > 0 && (same_id || w < NW))
inline restart_worker() {
  printf("w%d  is killed and started again\n", w);
  if
  :: TO_WORKER(net[0], w) -> net[0] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[1], w) -> net[1] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[2], w) -> net[2] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[3], w) -> net[3] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[4], w) -> net[4] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[5], w) -> net[5] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[6], w) -> net[6] = 0
  :: else -> skip
  fi;
  if
  :: TO_WORKER(net[7], w) -> net[7] = 0
  :: else -> skip
  fi;
  if
  :: same_id ->
    age(0, CURRENT, DEAD); age(1, CURRENT, DEAD); age(2, CURRENT, DEAD);
    age(3, CURRENT, DEAD); age(4, CURRENT, DEAD); age(5, CURRENT, DEAD);
    age(6, CURRENT, DEAD); age(7, CURRENT, DEAD);
    age(0, STALE, DEAD); age(1, STALE, DEAD); age(2, STALE, DEAD);
    age(3, STALE, DEAD); age(4, STALE, DEAD); age(5, STALE, DEAD);
    age(6, STALE, DEAD); age(7, STALE, DEAD);
    net_sort();
    if
    :: m_waiting[w] -> m_wait_rid[w] = DEAD
    :: else -> skip
    fi;
    register_again()
  :: else ->
    net_sort();
    lr = NONE; le = 0;
    id_gone[w] = 1;
    w = p + NW;
    ask()
  fi
}

proctype Worker(byte p) {
  byte w = p;     /* the id it registers under */
  byte lc;        /* cursor: batches committed */
  bit calling_complete;
  bit registering; /* the latest call is a Register */
  byte nxt;       /* 1 copy, 2 wait, 3 done */
  byte i;
  int m;

  atomic { ask() };
wait: /* CoordinatorClient::Call: the answer to our latest call; others are stale */
  do
  :: atomic {
      if
      :: FOR_ME(0) -> i = 0
      :: FOR_ME(1) -> i = 1
      :: FOR_ME(2) -> i = 2
      :: FOR_ME(3) -> i = 3
      :: FOR_ME(4) -> i = 4
      :: FOR_ME(5) -> i = 5
      :: FOR_ME(6) -> i = 6
      :: FOR_ME(7) -> i = 7
      fi;
      d_step {
        m = net[i];
        net_take(i);
        i = 0;
        nxt = 0;
        printf("w%d  receives ", w); pmsg(m);
        if
        :: MRID(m) != CURRENT ->
          if /* Worker::ReleaseStale: a grant for a call we gave up on goes back */
          :: TYP(m) == GRANT -> net_send(MK(RELEASE, w, MR(m), ME(m), MC(m), STALE, 0))
          :: else -> skip
          fi
        :: else ->
          if
          :: TYP(m) == GRANT -> lr = MR(m); le = ME(m); lc = MC(m); nxt = 1
          :: TYP(m) == NOWORK && MF(m) -> nxt = 3 /* the migration is complete: exit 0 */
          :: TYP(m) == REGD -> ask() /* registered: ask for a lease */
          :: else -> ask() /* no work yet (sleep, ask again); a lost completion */
          fi
        fi;
        m = 0
      };
      if
      :: nxt == 1 -> nxt = 0; goto copy
      :: nxt == 3 -> goto done
      :: else -> skip
      fi
    }
  :: atomic {
      /* the call times out: its answer was lost (or, EARLY times, is late) */
      QUIET(w) || early > 0 ->
      if
      :: !QUIET(w) -> early--
      :: else -> skip
      fi;
      if
      :: t_ver -> goto done /* TargetMarkedDone: the new store says complete */
      :: else -> skip
      fi;
      d_step {
        new_call();
        if
        :: registering ->
          printf("w%d  times out, registers again\n", w);
          net_send(MK(REG, w, 0, 0, 0, CURRENT, 0))
        :: calling_complete ->
          printf("w%d  times out, sends its completion again\n", w);
          net_send(MK(COMPLETE, w, lr, le, lc, CURRENT, 1))
        :: else -> net_send(MK(REQ, w, 0, 0, 0, CURRENT, 0))
        fi
      }
    }
  :: atomic { CAN_RESTART -> wcrash--; d_step { restart_worker() } } /* killed, started again */
  od;

copy: /* Worker::Copy (TargetCopier::ReadAndWrite / CopyDirect) */
  do
  :: atomic {
      /* DrainReplies: lease lost for this lease; a stale grant goes back */
      if
      :: FOR_ME(0) -> i = 0
      :: FOR_ME(1) -> i = 1
      :: FOR_ME(2) -> i = 2
      :: FOR_ME(3) -> i = 3
      :: FOR_ME(4) -> i = 4
      :: FOR_ME(5) -> i = 5
      :: FOR_ME(6) -> i = 6
      :: FOR_ME(7) -> i = 7
      fi;
      d_step {
        m = net[i];
        net_take(i);
        i = 0;
        nxt = 0;
        printf("w%d  receives while copying ", w); pmsg(m);
        if
        :: TYP(m) == LOST && MR(m) == lr && ME(m) == le -> ask(); nxt = 2
        :: TYP(m) == GRANT -> net_send(MK(RELEASE, w, MR(m), ME(m), MC(m), STALE, 0))
        :: else -> skip
        fi;
        m = 0
      };
      if
      :: nxt == 2 -> nxt = 0; goto wait
      :: else -> skip
      fi
    }
  :: atomic {
      /* one batch: read after the cursor, written in ONE transaction with
       * the fence (Store::WriteBatch / CopyProjected: SqliteStore::
       * CheckAndRecordFence, PgStore::BeginFenced);
       * then a heartbeat with the new cursor (SendHeartbeat) */
      lc < NB ->
      d_step {
        nxt = 0;
#ifndef BUGGY_FENCE
        if
        :: t_fence[lr] > le -> ask(); nxt = 2 /* kLeaseLost: "fenced" */
        :: else -> skip
        fi;
#endif
        if
        :: nxt == 0 ->
          assert(le >= g_maxep[lr]); /* P2 */
          assert(p_st[lr] != DONE); /* P7 */
          printf("w%d  writes batch %d of range %d with epoch %d (fence was %d)\n", w, lc, lr, le, t_fence[lr]);
          g_maxep[lr] = le;
          t_fence[lr] = le;
          t_rows[lr] = t_rows[lr] | (1 << lc);
          lc++;
          /* the heartbeat with this cursor (one that never comes is a lost
           * one: LOSS). One connection delivers in order, so a heartbeat
           * still in flight is overtaken by nothing: the new one replaces it
           * (the coordinator would apply both, in order, ending the same). */
          if
          :: TYP(net[0]) == HB && MW(net[0]) == w -> net[0] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[1]) == HB && MW(net[1]) == w -> net[1] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[2]) == HB && MW(net[2]) == w -> net[2] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[3]) == HB && MW(net[3]) == w -> net[3] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[4]) == HB && MW(net[4]) == w -> net[4] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[5]) == HB && MW(net[5]) == w -> net[5] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[6]) == HB && MW(net[6]) == w -> net[6] = 0
          :: else -> skip
          fi;
          if
          :: TYP(net[7]) == HB && MW(net[7]) == w -> net[7] = 0
          :: else -> skip
          fi;
          net_sort();
          net_send(MK(HB, w, lr, le, lc, STALE, 0))
        :: else -> skip
        fi
      };
      if
      :: nxt == 2 -> nxt = 0; goto wait
      :: else -> skip
      fi
    }
  :: atomic {
      /* the read after the cursor found no row: FinishRange(complete), next */
      lc == NB ->
      d_step {
        nxt = 0;
#ifndef BUG_NO_EMPTY_FENCE
        /* the empty last read is an empty, fenced write: it records the
         * epoch on the fence (or is fenced) before the completion */
        if
        :: t_fence[lr] > le -> ask(); nxt = 2
        :: else -> t_fence[lr] = le
        fi;
#endif
        if
        :: nxt == 0 ->
          printf("w%d  reads nothing more in range %d: Complete(next)\n", w, lr);
          calling_complete = 1;
          new_call();
          net_send(MK(COMPLETE, w, lr, le, lc, CURRENT, 1))
        :: else -> skip
        fi;
        nxt = 0
      };
      goto wait
    }
  :: atomic { CAN_RESTART -> wcrash--; d_step { restart_worker() } }; goto wait
  od;
done:
  lr = NONE
}

/* ================= the network's faults ================= */

active proctype Network() {
end:
  do
  :: atomic { loss > 0 && net[0] != 0 -> loss--; printf("net loses "); pmsg(net[0]); net_take(0) }
  :: atomic { loss > 0 && net[1] != 0 -> loss--; printf("net loses "); pmsg(net[1]); net_take(1) }
  :: atomic { loss > 0 && net[2] != 0 -> loss--; printf("net loses "); pmsg(net[2]); net_take(2) }
  :: atomic { loss > 0 && net[3] != 0 -> loss--; printf("net loses "); pmsg(net[3]); net_take(3) }
  :: atomic { loss > 0 && net[4] != 0 -> loss--; printf("net loses "); pmsg(net[4]); net_take(4) }
  :: atomic { loss > 0 && net[5] != 0 -> loss--; printf("net loses "); pmsg(net[5]); net_take(5) }
  :: atomic { loss > 0 && net[6] != 0 -> loss--; printf("net loses "); pmsg(net[6]); net_take(6) }
  :: atomic { loss > 0 && net[7] != 0 -> loss--; printf("net loses "); pmsg(net[7]); net_take(7) }
  :: atomic { dup > 0 && net[0] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[0]); net_send(net[0]) }
  :: atomic { dup > 0 && net[1] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[1]); net_send(net[1]) }
  :: atomic { dup > 0 && net[2] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[2]); net_send(net[2]) }
  :: atomic { dup > 0 && net[3] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[3]); net_send(net[3]) }
  :: atomic { dup > 0 && net[4] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[4]); net_send(net[4]) }
  :: atomic { dup > 0 && net[5] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[5]); net_send(net[5]) }
  :: atomic { dup > 0 && net[6] != 0 && net[NSLOT - 1] == 0 -> dup--; printf("net duplicates "); pmsg(net[6]); net_send(net[6]) }
  od
}

/* P6: once nothing can move any more, the migration is complete */
active proctype Final() {
  timeout ->
  prefix_p(cn);
  assert(cn == NR && p_complete && p_ver && g_bumps == 1 && t_ver && t_bnd == 0);
  ci = 0;
  do
  :: ci < NR -> assert(t_rows[ci] == FULL); ci++
  :: else -> break
  od
}

init {
  atomic {
    byte k = 0;
    do
    :: k < NR -> p_own[k] = NONE; m_own[k] = NONE; k++
    :: else -> break
    od;
    k = 0;
    do
    :: k < NID -> w_lr[k] = NONE; k++
    :: else -> break
    od;
#ifdef QUICK
    /* the scenarios of the default check (tests/model/check.sh --quick);
     * -DSCENARIO=N keeps only the N-th */
#ifndef SCENARIO
#define SCENARIO 0
#endif
    if
#if SCENARIO == 0 || SCENARIO == 1
    :: ccrash = 1; expire_budget = 1 /* crashes and commit failures x expiry */
#endif
#if SCENARIO == 0 || SCENARIO == 2
    :: ccrash = 1; loss = 1          /* crashes x lost messages */
#endif
#if SCENARIO == 0 || SCENARIO == 3
    :: dup = 1                       /* a duplicated message */
#endif
#if SCENARIO == 0 || SCENARIO == 4
    :: wcrash = 1; loss = 1          /* a worker restarted x lost messages */
#endif
#if SCENARIO == 0 || SCENARIO == 5
    :: early = 1                     /* a late answer to a call that timed out */
#endif
#if SCENARIO == 0 || SCENARIO == 6
    :: wcrash = 1; loss = 1; same_id = 1 /* a worker restarted under its --id x lost messages */
#endif
    fi;
#endif
    run Coordinator();
    k = 0;
    do
    :: k < NW -> run Worker(k); k++
    :: else -> break
    od
  }
}
