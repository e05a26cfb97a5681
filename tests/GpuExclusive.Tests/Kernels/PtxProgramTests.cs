namespace GpuExclusive.Tests.Kernels;

/// <summary>
/// <see cref="PtxProgram"/> on hand-written PTX in ILGPU's shape, for the cases its results depend on: a register
/// reused for another parameter, a join of two definitions, a loaded value used as an address, both constant-predicate
/// forms ILGPU leaves behind, and a jump table.
/// </summary>
public sealed class PtxProgramTests
{
    private const string Ptx = """
        .visible .entry Kernel_Probe(
        	.param .align 8 .b8 _ops_1[16],
        	.param .align 8 .b8 _control_2[24]
        )
        {
        	.reg .pred	%p<4>;
        	.reg .b32	%r<6>;
        	.reg .b64	%rd<3>;

        	ld.param.b64	%rd1, [_control_2+16];
        	ld.relaxed.sys.u64	%rd2, [%rd1];
        	ld.relaxed.sys.u32	%r1, [%rd2];
        	ld.param.b64	%rd1, [_ops_1];
        	ld.b32	%r2, [%rd1];
        	setp.eq.s32	%p1, %r2, 0;
        	@%p1 bra	L_1;
        	ld.param.b64	%rd1, [_control_2+16];

        	L_1:
        	ld.u32	%r3, [%rd1];
        	mov.pred	%p2, 0;
        	@%p2 bra	L_dead;
        	setp.ne.s32	%p3, 1, 1;
        	@!%p3 bra	L_2;
        	bra.uni	L_dead;

        	L_2:
        	.branchtargets L_3, L_4;
        	brx.idx	%r1, L_2;

        	L_3:
        	ld.s32	%r4, [%rd1];
        	ret;

        	L_4:
        	st.b32	[%rd1], %r4;
        	ret;

        	L_dead:
        	ld.u8	%r5, [%rd1];
        	ret;
        }
        """;

    private static readonly PtxProgram Program = PtxProgram.Parse(Ptx);

    [Theory]
    [InlineData("ld.relaxed.sys.u64", "control")]
    [InlineData("ld.relaxed.sys.u32")]             // its address was loaded from memory: no parameter
    [InlineData("ld.b32", "ops")]                   // %rd1 was reused: its control definition no longer reaches
    [InlineData("ld.u32", "control", "ops")]        // both definitions reach the join
    [InlineData("ld.s32", "control", "ops")]        // a jump-table target
    public void AddressParameters_FollowDefinitionsReachingTheAccess(string opcode, params string[] expected) =>
        Assert.Equal(expected, Program.AddressParameters(Single(opcode)).Order(StringComparer.Ordinal));

    [Theory]
    [InlineData("ld.s32", true)]   // brx.idx reaches every target of its table
    [InlineData("st.b32", true)]
    [InlineData("bra.uni", false)] // setp.ne.s32 %p3, 1, 1 is false, so @!%p3 always jumps
    [InlineData("ld.u8", false)]   // mov.pred %p2, 0: never taken
    public void Reachable_FoldsConstantPredicates(string opcode, bool reachable) =>
        Assert.Equal(reachable, Program.Reachable.Contains(Single(opcode)));

    private static PtxInstruction Single(string opcode) => Assert.Single(Program.Instructions, i => i.Opcode == opcode);
}
